"""GET /core/events/stream: every audited change as Server-Sent Events."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..auth.deps import VIEWER, first_header
from ..auth.models import Identity
from ..auth.service import Authenticator
from ..context import AppContext, get_ctx
from ..errors import (
    DomainError,
    InvalidInputError,
    RateLimitedError,
    ServiceUnavailableError,
    storage_unavailable,
)
from ..storage.errors import StorageError
from ..storage.protocol import Store
from .hub import EventHub
from .tail import Position, read_after, record_seq, start_position

log = logging.getLogger(__name__)

router = APIRouter(prefix="/events", tags=["events"])
Ctx = Annotated[AppContext, Depends(get_ctx)]

# Records sent per read of the log: a long replay goes out in slices, so the
# stream starts at once and memory stays flat.
BATCH = 200
# The client reconnects this long after a lost connection (the SSE default is
# browser-specific; this makes it the same everywhere).
RETRY_MS = 2000
MAX_EVENT_ID_DIGITS = 18  # stays a 64-bit integer
# A stream's right to read is checked again this often while it runs (and
# before a batch goes out once the period has passed), whether events flow
# or not: a revoked token's stream ends within it.
RECHECK_SECONDS = 1.0


def get_hub(request: Request) -> EventHub:
    ctx: AppContext = request.app.state.ctx
    return ctx.get(EventHub)


def sse_event(record: dict[str, Any]) -> str:
    """One audit record as an SSE event. The JSON is ASCII-escaped: one line,
    whatever the notes hold (a newline would end the field)."""
    name = str(record.get("event") or "message").replace("\r", " ").replace("\n", " ")
    data = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
    return f"id: {record_seq(record)}\nevent: {name}\ndata: {data}\n\n"


def parse_last_event_id(raw: str | None) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_EVENT_ID_DIGITS:
        raise InvalidInputError(
            "Last-Event-ID must be the id (audit seq) of an event this stream sent",
            body={
                "detail": [
                    {
                        "type": "value_error",
                        "loc": ["header", "Last-Event-ID"],
                        "msg": "expected a non-negative integer",
                    }
                ]
            },
        )
    return int(value)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: `id:` the audit seq, `event:` the audit "
            "event name, `data:` the audit record as JSON; a comment at least every 15 s.",
        },
        422: {"description": "Last-Event-ID is not an event id"},
        429: {"description": "Too many open streams for this client"},
        503: {"description": "Storage unavailable or corrupt"},
    },
)
async def stream(
    request: Request,
    ctx: Ctx,
    who: Annotated[Identity, Depends(VIEWER)],
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=40)] = None,
) -> StreamingResponse:
    """Every audited change, in order, live. Send `Last-Event-ID` (as
    EventSource does on reconnect) to receive every event after it first."""
    hub = get_hub(request)
    after = parse_last_event_id(last_event_id)
    # Streams are budgeted per identity (a credential's name), never per address.
    client = f"token:{who.name}"
    if hub.closing:
        raise ServiceUnavailableError("the server is shutting down", headers={"Retry-After": "2"})
    if not hub.acquire(client):
        raise RateLimitedError(
            f"at most {hub.max_streams_per_client} event streams per client are open at once; "
            "close one (another tab?) and retry",
            headers={"Retry-After": "5"},
        )
    try:
        # Before the response starts, so a corrupt log is a 503 naming it.
        generation = hub.generation
        position = await run_in_threadpool(start_position, ctx.store, after)
    except BaseException:
        hub.release(client)
        raise
    tail = _Tail(
        ctx,
        hub,
        who,
        authorization=first_header(request.scope["headers"], b"authorization"),
        generation=generation,
        position=position,
    )
    return StreamingResponse(
        tail.events(client),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _Tail:
    """One stream's loop: read the log forward, send, wait for a wake-up;
    and, on a timer, check that its credential still may read."""

    def __init__(
        self,
        ctx: AppContext,
        hub: EventHub,
        who: Identity,
        *,
        authorization: str | None,
        generation: int,
        position: Position,
    ) -> None:
        self.ctx = ctx
        self.hub = hub
        self.who = who
        self.authorization = authorization
        self.generation = generation
        self.position = position

    def still_allowed(self) -> bool:
        """The stream's credential, checked again as the guard checked it."""
        ctx = self.ctx
        try:
            again = ctx.get(Authenticator).authenticate(
                store=ctx.store, clock=ctx.clock, authorization=self.authorization
            )
        except DomainError:
            return False
        return again.name == self.who.name and again.allows("viewer")

    async def events(self, client: str) -> AsyncIterator[str]:
        hub, store = self.hub, self.ctx.store
        keepalive = self.ctx.settings.events_keepalive_seconds
        try:
            yield f"retry: {RETRY_MS}\n: stream open\n\n"
            last_sent = last_read = checked = time.monotonic()
            read = True
            while not hub.closing:
                records: list[dict[str, Any]] = []
                if read:
                    records, self.position = await _read(store, self.position)
                    last_read = time.monotonic()
                if time.monotonic() - checked >= RECHECK_SECONDS:
                    # On a timer and before anything more goes out: not only
                    # at keep-alives, which never come while events flow.
                    if not await run_in_threadpool(self.still_allowed):
                        yield 'event: stream-end\ndata: {"reason":"unauthorized"}\n\n'
                        return
                    checked = time.monotonic()
                for record in records:
                    yield sse_event(record)
                if records:
                    last_sent = time.monotonic()
                if len(records) == BATCH:
                    continue
                now = time.monotonic()
                idle = now - last_sent
                if idle >= keepalive:
                    yield ": keep-alive\n\n"
                    last_sent, idle = now, 0.0
                await hub.wait(
                    self.generation,
                    min(keepalive - idle, max(0.0, checked + RECHECK_SECONDS - now)),
                )
                # The log is read again when it may have grown, and at least
                # once a keep-alive period whatever the wake-ups said.
                read = hub.generation != self.generation or (
                    time.monotonic() - last_read >= keepalive
                )
                self.generation = hub.generation
        except StorageError as exc:
            log.error("event stream stopped: %s", exc)
            said = storage_unavailable(exc)["detail"]  # no database URL or SQL to a client
            detail = json.dumps({"reason": "storage", "detail": said}, ensure_ascii=True)
            yield f"event: stream-error\ndata: {detail}\n\n"
        finally:
            hub.release(client)


async def _read(store: Store, position: Position) -> tuple[list[dict[str, Any]], Position]:
    return await run_in_threadpool(read_after, store, position, BATCH)
