"""One delivery: its body (the audit record, or text for a chat), its signed
headers, and one HTTP POST, bounded in every direction and never raising.

Only http and https; connect and read timeouts plus an overall deadline; at
most ``webhook_max_response_bytes`` of the answer are read; redirects are
not followed (a 3xx is a failed attempt, so a receiver cannot bounce a signed
event somewhere else). Whatever goes wrong (the key, a URL the client cannot
use, a refused connection, an error of the client itself) is an
:class:`Attempt` that failed, with what went wrong in words: one webhook's
trouble is its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..cone.canon import BAND_MEANING
from ..errors import ServiceUnavailableError
from ..timeutil import Clock
from .keys import SigningKey, secret_for
from .models import Format, UnusableUrlError, WebhookRecord, check_url, redact_url

if TYPE_CHECKING:  # the CLI lists webhooks without loading pydantic-settings
    from ..settings import Settings

MAX_ERROR = 300
MAX_TEXT = 3000  # chat services cut long messages; ours stay well inside
# httpx logs every request's full URL at INFO; a chat webhook's URL is its
# credential, so only warnings and errors from it reach the logs.
logging.getLogger("httpx2").setLevel(logging.WARNING)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    status: int | None
    error: str | None
    duration_ms: float


class Sender:
    """A pooled async client shared by every delivery of one process."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        import httpx2 as httpx  # imported when the first sender is made: workers start faster

        connect, read = settings.webhook_connect_timeout, settings.webhook_read_timeout
        self.deadline = connect + read
        self.max_bytes = settings.webhook_max_response_bytes
        self.clock = clock
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=connect, read=read, write=read, pool=connect),
            follow_redirects=False,
            trust_env=False,  # no proxy or .netrc from the environment: where it says
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    async def send(
        self,
        hook: WebhookRecord,
        record: dict[str, Any],
        *,
        event_id: str,
        delivery: str,
        key: SigningKey | None,
    ) -> Attempt:
        """Build, sign and POST one event to one webhook."""
        import httpx2 as httpx

        started = time.monotonic()
        try:
            secret = secret_for(hook, key)
            # Checked again here: webhooks.json may have been edited by hand.
            check_url(hook.url)
            body = render(record, hook.format, event_id=event_id)
            signed = headers(
                event=str(record.get("event")),
                delivery=delivery,
                secret=secret,
                body=body,
                timestamp=int(self.clock().timestamp()),
            )
            async with asyncio.timeout(self.deadline):
                status = await self._post(hook.url, body, signed)
        except ServiceUnavailableError as exc:
            error = exc.detail
        except UnusableUrlError as exc:
            error = f"{exc}; remove the webhook and add it again with a usable URL"
        except TimeoutError:
            error = f"no answer within {self.deadline:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            log.debug("webhooks: a delivery to %s raised", hook.name, exc_info=True)
            named = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            error = f"the delivery failed ({named})"
        else:
            ms = (time.monotonic() - started) * 1000
            if 200 <= status < 300:
                return Attempt(True, status, None, ms)
            reason = "redirect not followed" if 300 <= status < 400 else "not a 2xx answer"
            return Attempt(False, status, f"HTTP {status} ({reason})", ms)
        # Error texts may quote the URL, and it can hold a credential.
        error = error.replace(hook.url, redact_url(hook.url))[:MAX_ERROR]
        return Attempt(False, None, error, (time.monotonic() - started) * 1000)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        async with self._client.stream("POST", url, content=body, headers=headers) as resp:
            seen = 0
            async for chunk in resp.aiter_raw():
                seen += len(chunk)
                if seen >= self.max_bytes:
                    break  # the rest is not read; the connection is dropped
            return resp.status_code

    async def aclose(self) -> None:
        await self._client.aclose()


def headers(
    *, event: str, delivery: str, secret: str, body: bytes, timestamp: int
) -> dict[str, str]:
    """``timestamp`` (unix seconds) is the time of this attempt: a retry is
    signed anew, so its signature is as fresh as a first try's."""
    key = secret.encode("utf-8")
    timed = hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "User-Agent": f"valhalla-gov-webhook/{__version__}",
        "X-Valhalla-Event": event,
        # The same on every retry: receivers drop duplicates by it.
        "X-Valhalla-Delivery": delivery,
        # HMAC of "<t>.<body>": a receiver that checks t against its own clock
        # refuses a replayed delivery (docs/webhooks.md).
        "X-Valhalla-Timed-Signature": f"t={timestamp},v1={timed.hexdigest()}",
        # Deprecated, kept while receivers in the field check it: it signs the
        # body alone, so a captured delivery can be replayed.
        "X-Valhalla-Signature": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


def render(record: dict[str, Any], fmt: Format, *, event_id: str) -> bytes:
    """The body: the audit record as receivers get it (``id`` is its audit seq,
    as a string), or one readable line for a chat."""
    if fmt == "slack":
        body: dict[str, Any] = {"text": slack_text(record)}
    else:
        body = {
            "id": event_id,
            "event": record.get("event"),
            "ts_utc": record.get("ts_utc"),
            "actor": record.get("actor"),
            "payload": record.get("payload"),
        }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _esc(value: object) -> str:
    """Slack's three control characters, escaped in anything users typed."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _band(band: object) -> str:
    return f"{_esc(band)} ({BAND_MEANING.get(str(band), '?')})"


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def slack_text(record: dict[str, Any]) -> str:
    """One readable line (plus details) per event, for a person in a chat."""
    event = str(record.get("event"))
    actor = _esc(record.get("actor") or "someone")
    raw = record.get("payload")
    p: dict[str, Any] = raw if isinstance(raw, dict) else {}
    notes = f"\n> {_esc(p['notes'])}" if p.get("notes") else ""
    if event == "GO_SESSION_START":
        text = f":arrow_forward: GO session started by {actor}{notes}"
    elif event == "GO_SESSION_END":
        took = _duration(p.get("duration_seconds"))
        text = f":checkered_flag: GO session ended by {actor} after {took}{notes}"
    elif event == "CONE_SET":
        moved = "moved" if p.get("from") != p.get("to") else "confirmed"
        text = (
            f":compass: Cone band {moved}: {_band(p.get('from'))} → {_band(p.get('to'))}, "
            f"by {actor}\n> {_esc(p.get('reason', ''))}"
        )
    elif event == "HEALTH_CHANGED":
        icon = {"red": ":red_circle:", "yellow": ":large_yellow_circle:"}.get(
            str(p.get("to")), ":large_green_circle:"
        )
        reasons = "".join(f"\n• {_esc(r)}" for r in p.get("reasons") or [])
        text = f"{icon} Health {_esc(p.get('from'))} → {_esc(p.get('to'))}{reasons}"
    elif event == "WEBHOOK_TEST":
        text = f":wave: Test from Valhalla GO: webhook {_esc(p.get('webhook'))} is wired up."
    else:
        detail = json.dumps(raw, ensure_ascii=False, sort_keys=True)
        text = f"{_esc(event)} by {actor}: {_esc(detail)}"
    text = f"Valhalla GO · {text}"
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
