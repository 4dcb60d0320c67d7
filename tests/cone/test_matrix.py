"""The default canon and band/action matrix, decision by decision."""

from __future__ import annotations

from typing import cast

import pytest

from tests.conftest import FakeClock
from valhalla_gov.cone.canon import Action, Band, Canon, load_canon
from valhalla_gov.cone.models import ConeDecision
from valhalla_gov.cone.service import decide, set_cone_state
from valhalla_gov.storage.protocol import Store

from .expected import (
    ACTIONS,
    ALL_ENGINES,
    ALLOWED,
    BANDS,
    CLASS_OF,
    ENGINE_CLASSES,
    HARD_CAPS_USD,
    MATRIX_CASES,
)


@pytest.fixture
def canon() -> Canon:
    return load_canon(None)


def _set_band(store: Store, clock: FakeClock, band: str) -> None:
    set_cone_state(
        store=store,
        band=cast(Band, band),
        reason=f"testing band {band}",
        metrics=None,
        actor="tester",
        clock=clock,
    )


def _decide(store: Store, clock: FakeClock, canon: Canon, engine: str, action: str) -> ConeDecision:
    return decide(
        store=store,
        canon=canon,
        engine=engine,
        action=cast(Action, action),
        actor="tester",
        clock=clock,
    )


@pytest.mark.parametrize(
    ("band", "engine", "action", "allowed"),
    MATRIX_CASES,
    ids=[f"{b}-{e}-{a}" for b, e, a, _ in MATRIX_CASES],
)
def test_default_canon_table(
    canon: Canon, band: str, engine: str, action: str, allowed: bool
) -> None:
    assert (action in canon.allowed(band, CLASS_OF[engine])) is allowed


@pytest.mark.parametrize("band", BANDS)
def test_default_matrix_decisions(store: Store, clock: FakeClock, canon: Canon, band: str) -> None:
    """Every engine x every action through the service, in one band."""
    _set_band(store, clock, band)
    actual: dict[tuple[str, str], bool] = {}
    for engine in ALL_ENGINES:
        for action in ACTIONS:
            decision = _decide(store, clock, canon, engine, action)
            assert decision.band == band
            assert decision.engine == engine
            assert decision.action == action
            assert decision.engine_class == CLASS_OF[engine]
            assert decision.hard_cap_usd == HARD_CAPS_USD.get(engine)
            assert f"band {band}" in decision.reason
            actual[engine, action] = decision.allowed
    expected = {(e, a): allowed for b, e, a, allowed in MATRIX_CASES if b == band}
    assert actual == expected


def test_default_canon_knows_exactly_the_issue_engines(canon: Canon) -> None:
    assert sorted(canon.engines()) == sorted(ALL_ENGINES)
    for engine, cls in CLASS_OF.items():
        assert canon.class_of(engine) == cls
    assert canon.class_of("not_an_engine") is None


@pytest.mark.parametrize("band", BANDS)
def test_canon_allowed_lists_per_class(canon: Canon, band: str) -> None:
    for cls in ENGINE_CLASSES:
        assert set(canon.allowed(band, cls)) == ALLOWED[band].get(cls, frozenset()), cls


def test_boring_never_optimizes_and_opportunistic_never_scales(
    store: Store, clock: FakeClock, canon: Canon
) -> None:
    for band in BANDS:
        _set_band(store, clock, band)
        for engine in ENGINE_CLASSES["boring"]:
            assert not _decide(store, clock, canon, engine, "optimize").allowed, band
            assert _decide(store, clock, canon, engine, "run").allowed, band
        for engine in ENGINE_CLASSES["opportunistic"]:
            assert not _decide(store, clock, canon, engine, "scale").allowed, band


def test_standby_and_legacy_may_do_nothing_in_any_band(
    store: Store, clock: FakeClock, canon: Canon
) -> None:
    for band in BANDS:
        _set_band(store, clock, band)
        for engine in ENGINE_CLASSES["standby"] + ENGINE_CLASSES["legacy"]:
            for action in ACTIONS:
                decision = _decide(store, clock, canon, engine, action)
                assert decision.allowed is False, (band, engine, action)
                assert "allowed: nothing" in decision.reason


def test_hard_caps_only_for_the_three_opportunistic_engines(
    store: Store, clock: FakeClock, canon: Canon
) -> None:
    caps = {
        engine: _decide(store, clock, canon, engine, "run").hard_cap_usd for engine in ALL_ENGINES
    }
    assert {engine: cap for engine, cap in caps.items() if cap is not None} == {
        "fx_arbitrage": 25000,
        "collectibles_arbitrage": 25000,
        "sports_intelligence": 15000,
    }
    assert all(
        caps[engine] is None for engine in ALL_ENGINES if CLASS_OF[engine] != "opportunistic"
    )
