"""A store on which another writer commits a band change just before each
write transaction opens: whatever a service judged before its transaction
is stale, and only what it reads inside can be right."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import cast

from tests.conftest import FakeClock
from valhalla_gov.cone.canon import Band
from valhalla_gov.cone.service import set_cone_state
from valhalla_gov.storage.protocol import Store, StoreTxn


class _BandMovesJustBefore:
    def __init__(self, store: Store, clock: FakeClock, band: Band) -> None:
        self._store, self._clock, self._band = store, clock, band

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def transaction(self) -> AbstractContextManager[StoreTxn]:
        set_cone_state(
            store=self._store,
            band=self._band,
            reason="racing",
            metrics=None,
            actor="t",
            clock=self._clock,
        )
        return self._store.transaction()


def band_moves_just_before(store: Store, clock: FakeClock, band: Band) -> Store:
    return cast(Store, _BandMovesJustBefore(store, clock, band))
