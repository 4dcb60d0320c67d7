"""The type routers receive: what the composition root built for this app.

Built once per app by :func:`valhalla_gov.compose.build_context` (no globals);
routers and guards read it with :func:`get_ctx` and hand services what they
need, keyword by keyword. This module builds nothing, so importing it costs
nothing and creates no cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from fastapi import Request

from .settings import Settings
from .storage.protocol import Store
from .timeutil import Clock, utc_now

T = TypeVar("T")


@dataclass
class AppContext:
    settings: Settings
    store: Store
    clock: Clock = utc_now
    # Every feature's readiness checks (see Feature.readiness).
    readiness: Sequence[Callable[[Store], object]] = ()
    # Objects a feature builds for itself, by type (see AppContext.get).
    extensions: dict[type, object] = field(default_factory=dict)

    def get(self, kind: type[T]) -> T:
        """The object of type ``kind`` a feature registered for this app."""
        return cast(T, self.extensions[kind])


async def get_ctx(request: Request) -> AppContext:
    """Async on purpose: a sync dependency costs a worker-thread round trip."""
    ctx: AppContext = request.app.state.ctx
    return ctx
