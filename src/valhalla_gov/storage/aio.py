"""Store calls from async code: on the event loop when the store can answer
without waiting (JSON files; SQL reads found in the cache at the generation
just read by the async fence), in a worker thread otherwise."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

from starlette.concurrency import run_in_threadpool

from .protocol import R, Store

# Where a request keeps the generation it has read (its ASGI scope's state):
# the gate, the route's guard and the route share one read. Every read in the
# request is still made after the request arrived, so what it answers is
# current as of then: a write acknowledged before the request was sent, on
# any worker or replica, is seen.
_GENERATION = "valhalla.store_generation"


def request_generation(scope: MutableMapping[str, Any]) -> int | None:
    """The store generation this request has read (None: not read yet, or
    no store generations), for a sync route's reads before it writes."""
    state = scope.get("state")
    value = state.get(_GENERATION) if isinstance(state, dict) else None
    return value if isinstance(value, int) else None


def request_reading(
    store: Store, scope: MutableMapping[str, Any]
) -> AbstractContextManager[int | None]:
    """A read-only sync route's reads, at the generation its request has
    read (no round trip to learn it again). Not for a route that writes: its
    reads after the write must see it."""
    return store.reading(request_generation(scope))


async def run_store(
    store: Store, fn: Callable[[], R], scope: MutableMapping[str, Any] | None = None
) -> R:
    if not store.blocking:
        return fn()
    state: dict[str, Any] | None = None if scope is None else scope.setdefault("state", {})
    generation: int | None = None if state is None else state.get(_GENERATION)
    if generation is None:
        generation = await store.current_generation()
        if state is not None and generation is not None:
            state[_GENERATION] = generation
    known = store.run_cached(fn, generation)
    if known is not None:
        return known[0]
    if generation is None:
        return await run_in_threadpool(fn)
    at = generation

    def read_at() -> R:
        # The reads missed the cache: made in a thread, at the generation
        # already read for this request (no second round trip to learn it).
        with store.reading(at):
            return fn()

    return await run_in_threadpool(read_at)
