"""What a delivery carries: the body (JSON or Slack text) and its headers."""

from __future__ import annotations

import json
from typing import Any

from .. import __version__
from ..cone.canon import BAND_MEANING
from .keys import sign, sign_timed
from .models import Format

MAX_TEXT = 3000  # chat services cut long messages; ours stay well inside
SIGNATURE = "X-Valhalla-Signature"  # deprecated: the body alone (replayable)
TIMED_SIGNATURE = "X-Valhalla-Timed-Signature"


def delivery_id(webhook_id: str, seq: int) -> str:
    """Stable per event and webhook: the same on every retry."""
    return f"{webhook_id}-{seq}"


def event_body(record: dict[str, Any], event_id: str) -> dict[str, Any]:
    """The audit record as receivers get it; ``id`` is the audit seq (as a string)."""
    return {
        "id": event_id,
        "event": record.get("event"),
        "ts_utc": record.get("ts_utc"),
        "actor": record.get("actor"),
        "payload": record.get("payload"),
    }


def render(record: dict[str, Any], fmt: Format, *, event_id: str) -> bytes:
    body: dict[str, Any] = (
        {"text": slack_text(record)} if fmt == "slack" else event_body(record, event_id)
    )
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def headers(
    *, event: str, delivery: str, secret: str, body: bytes, timestamp: int
) -> dict[str, str]:
    """``timestamp`` (unix seconds) is the time of this attempt: a retry is
    signed anew, so its signature is as fresh as a first try's."""
    return {
        "Content-Type": "application/json",
        "User-Agent": f"valhalla-gov-webhook/{__version__}",
        "X-Valhalla-Event": event,
        "X-Valhalla-Delivery": delivery,
        TIMED_SIGNATURE: sign_timed(secret, body, timestamp),
        # Kept while receivers in the field verify it (docs: deprecated).
        SIGNATURE: sign(secret, body),
    }


def _esc(value: object) -> str:
    """Slack's three control characters, escaped in anything users typed."""
    text = str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
