"""Audit endpoints."""

from __future__ import annotations

import asyncio
import functools
import math
import re
import threading
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AfterValidator
from starlette.concurrency import run_in_threadpool

from ..api_docs import RATE_HEADERS, RateLimitedBody
from ..auth.deps import VIEWER
from ..context import AppContext, get_ctx
from ..errors import RateLimitedError
from ..timeutil import UtcDateTime, as_utc
from . import service
from .models import AuditHead, AuditPage, AuditVerifyResult

router = APIRouter(prefix="/audit", tags=["audit"])
# The app names its events in upper snake case (GO_SESSION_START): a name in
# that shape is matched in any case; anything else exactly as given.
EVENT_STYLE = re.compile(r"[A-Za-z]+(?:_[A-Za-z]+)+")
# As long as the SQL kind column the event filter reads.
MAX_EVENT_NAME = 200


def _event_name(event: str | None) -> str | None:
    if event is None:
        return None
    name = event.strip()
    return name.upper() if EVENT_STYLE.fullmatch(name) else event


def _printable(value: str | None) -> str | None:
    """Refuse text no event name or cursor holds (NUL, other control
    characters), before it reaches a store: 422, never a storage error."""
    if value is not None and not value.isprintable():
        raise ValueError("must be printable text, without NUL or other control characters")
    return value


Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.get(
    "/events",
    response_model=AuditPage,
    summary="Audit events, newest first",
    dependencies=[Depends(VIEWER)],
)
def list_events(
    ctx: Ctx,
    event: Annotated[
        str | None,
        Query(
            max_length=MAX_EVENT_NAME,
            description="Only this event type; the app's names (GO_SESSION_START ...) "
            "match in any case. Printable text.",
            examples=["GO_SESSION_START"],
        ),
        AfterValidator(_printable),
    ] = None,
    since: UtcDateTime | None = None,
    until: UtcDateTime | None = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=40), AfterValidator(_printable)] = None,
) -> AuditPage:
    """Audit events, newest first; pass `next_cursor` back as `cursor` for older ones."""
    return service.query_events(
        store=ctx.store,
        event=_event_name(event),
        since=as_utc(since),
        until=as_utc(until),
        limit=limit,
        cursor=cursor,
    )


class OneAtATime:
    """At most one verify in this process: it walks the whole log, on a CPU,
    for as long as the log is long, and requests for it must not crowd out
    the writes. A request that finds one running waits (on the event loop,
    holding no worker thread) up to ``wait_s`` for its turn."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self.lock = threading.Lock()
        self.last_walk_s = 1.0  # how long the last walk took: the Retry-After given

    async def turn(self) -> bool:
        deadline = time.monotonic() + self.wait_s
        while not self.lock.acquire(blocking=False):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True


VERIFYING = OneAtATime(wait_s=2.0)


@router.get(
    "/verify",
    response_model=AuditVerifyResult,
    summary="Verify the audit hash chain",
    dependencies=[Depends(VIEWER)],
    responses={
        429: {
            "description": f"Another verify is running in this server process and did not "
            f"finish within {VERIFYING.wait_s:g} s (one runs at a time); retry after "
            "`Retry-After` seconds.",
            "headers": {"Retry-After": RATE_HEADERS["Retry-After"]},
            "model": RateLimitedBody,
        }
    },
)
async def verify(
    ctx: Ctx,
    anchor: Annotated[
        str | None,
        Query(
            pattern=service.ANCHOR_PATTERN,
            description="`SEQ:HASH` from `/core/audit/head`, kept apart from the log: "
            "the log must still hold that event (catches a truncated tail).",
        ),
    ] = None,
) -> AuditVerifyResult:
    """Walk the whole hash chain and report the first broken link. One verify
    runs at a time per server process; another request waits for it up to
    a few seconds, then gets 429 with `Retry-After`."""
    parsed = None if anchor is None else service.parse_anchor(anchor)
    if not await VERIFYING.turn():
        retry = max(1, math.ceil(VERIFYING.last_walk_s))
        raise RateLimitedError(
            f"another audit verify is running in this server process (one at a time); "
            f"retry in {retry}s",
            body={"retry_after_seconds": retry},
            headers={"Retry-After": str(retry)},
        )
    started = time.monotonic()
    try:
        # Once the thread runs, this wait cannot be cancelled (a client gone
        # away): the turn is handed on only when the walk is over.
        return await run_in_threadpool(
            functools.partial(service.verify_chain, store=ctx.store, anchor=parsed)
        )
    finally:
        VERIFYING.last_walk_s = time.monotonic() - started
        VERIFYING.lock.release()


@router.get("/head", response_model=AuditHead, dependencies=[Depends(VIEWER)])
def head(ctx: Ctx) -> AuditHead:
    """The newest chained event's seq and hash: an anchor to keep apart from the log."""
    return service.chain_head(store=ctx.store)
