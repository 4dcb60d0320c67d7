"""Cone rules: read and set the band, decide engine actions (all audited)."""

from __future__ import annotations

from typing import Any

from ..audit.service import log_event
from ..auth.models import Scope
from ..errors import NotFoundError
from ..storage.protocol import Reader, Store
from ..timeutil import Clock, iso_z
from .canon import BAND_MEANING, Action, Band, Canon
from .models import ConeDecision, ConeState
from .store import CONE_STATE, DECISIONS, read_state


def get_cone_state(*, store: Reader) -> ConeState:
    """The current state, through the store or inside a transaction."""
    return read_state(store)


def set_cone_state(
    *,
    store: Store,
    band: Band,
    reason: str,
    metrics: dict[str, Any] | None,
    actor: str,
    clock: Clock,
) -> ConeState:
    with store.transaction() as txn:
        before = read_state(txn)
        state = ConeState(
            band=band,
            reason=reason,
            metrics=metrics if metrics is not None else {},
            updated_at_utc=iso_z(clock()),
            updated_by=actor,
        )
        txn.write_document(CONE_STATE, state.model_dump())
        log_event(
            txn,
            event="CONE_SET",
            payload={"from": before.band, "to": band, "reason": reason, "metrics": state.metrics},
            actor=actor,
            clock=clock,
        )
    return state


def decide(
    *,
    store: Store,
    canon: Canon,
    engine: str,
    action: Action,
    actor: str,
    clock: Clock,
    role: Scope = "owner",
) -> ConeDecision:
    """May ``engine`` do ``action`` in the current band? Records the decision
    (for the health deny-rate) and audits it as CONE_ALLOW or CONE_DENY.

    ``role`` is the asker's highest scope, kept with the decision: the health
    deny rate counts only operators' and owners' decisions, so a viewer's
    questions cannot move the light."""
    engine_class = canon.class_of(engine)
    if engine_class is None:
        raise NotFoundError(
            f"unknown engine {engine!r}; known engines: {', '.join(canon.engines())}",
            body={"known_engines": canon.engines()},
        )
    with store.transaction() as txn:
        band = read_state(txn).band
        permitted = canon.allowed(band, engine_class)
        allowed = action in permitted
        meaning = BAND_MEANING[band]
        if allowed:
            reason = f"band {band} ({meaning}) lets {engine_class} engines {action}"
        else:
            may = ", ".join(permitted) if permitted else "nothing"
            reason = (
                f"band {band} ({meaning}) does not let {engine_class} engines {action}"
                f" (allowed: {may})"
            )
        decision = ConeDecision(
            allowed=allowed,
            band=band,
            engine=engine,
            action=action,
            reason=reason,
            engine_class=engine_class,
            hard_cap_usd=canon.hard_caps_usd.get(engine),
        )
        now = iso_z(clock())
        txn.append_log(
            DECISIONS,
            {
                "ts_utc": now,
                "engine": engine,
                "action": action,
                "band": band,
                "allowed": allowed,
                "role": role,
            },
        )
        log_event(
            txn,
            event="CONE_ALLOW" if allowed else "CONE_DENY",
            payload=decision.model_dump(),
            actor=actor,
            clock=clock,
        )
    return decision
