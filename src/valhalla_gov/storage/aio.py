"""Store calls from async code: in a worker thread (store calls block on
files or the database). Transitional: callers move to
``starlette.concurrency.run_in_threadpool`` directly."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from .protocol import Store

R = TypeVar("R")


async def run_store(
    store: Store, fn: Callable[[], R], scope: MutableMapping[str, Any] | None = None
) -> R:
    return await run_in_threadpool(fn)
