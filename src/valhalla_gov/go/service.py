"""PACK H rules: which steps fit the band, which are blocked, what is next."""

from __future__ import annotations

from ..audit.service import log_event
from ..cone.canon import band_rank
from ..cone.models import ConeState
from ..cone.service import get_cone_state
from ..errors import ConflictError, NotFoundError
from ..health.models import HealthStatus
from ..health.service import with_cone
from ..storage.protocol import Reader, Store
from ..timeutil import Clock, iso_z
from . import session_store
from .models import Checklist, ChecklistStep, CompleteResult, NextStep, Playbook, StepProgress
from .store import read_progress, write_progress


def get_checklist(*, store: Reader, playbook: Playbook, health: HealthStatus) -> Checklist:
    """The checklist as the store holds it now (through the store, or inside
    a transaction). ``health``: the published light, judged again with the
    band read here, so the two agree."""
    cone = get_cone_state(store=store)
    return checklist_of(playbook, read_progress(store), cone, with_cone(health, cone))


def checklist_of(
    playbook: Playbook,
    progress: dict[str, StepProgress],
    cone: ConeState,
    health: HealthStatus,
) -> Checklist:
    band = cone.band
    red = health.status == "red"
    steps: list[ChecklistStep] = []
    for step in playbook.steps:
        state = progress.get(step.id, StepProgress())
        blocked = red and step.blocked_if_red
        fits = band_rank(band) <= band_rank(step.band_min)
        steps.append(
            ChecklistStep(
                **step.model_dump(),
                done=state.done,
                notes=state.notes,
                fits=fits,
                blocked=blocked,
                blocked_reason=("health is red: " + "; ".join(health.reasons)) if blocked else None,
                fit_reason=None
                if fits
                else f"needs band {step.band_min} or better; the cone is at {band}",
            )
        )
    reasons: list[str] = []
    if red and any(s.blocked for s in steps):
        reasons.append("health is red: " + "; ".join(health.reasons))
    unfit = [s.id for s in steps if not s.fits and not s.done]
    if unfit:
        reasons.append(f"band {band} is worse than these steps need: {', '.join(unfit)}")
    return Checklist(
        cone_band=band,
        status=health.status,
        steps=steps,
        blocked_reasons=reasons,
        done_count=sum(1 for s in steps if s.done),
        total=len(steps),
    )


def next_step_of(checklist: Checklist) -> NextStep:
    pending = [s for s in checklist.steps if not s.done]
    ready = [s for s in pending if s.fits and not s.blocked]
    if ready:
        step = ready[0]
        message = f"Next: {step.title}"
    elif not pending:
        step, message = None, "Every step of the playbook is done."
    elif any(s.blocked for s in pending):
        step = None
        message = "The remaining steps are blocked while health is red; fix the reasons first."
    else:
        step = None
        message = f"The remaining steps need a better band than {checklist.cone_band}."
    return NextStep(
        cone_band=checklist.cone_band, status=checklist.status, next_step=step, message=message
    )


def get_next_step(*, store: Store, playbook: Playbook, health: HealthStatus) -> NextStep:
    return next_step_of(get_checklist(store=store, playbook=playbook, health=health))


def complete_step(
    *,
    store: Store,
    playbook: Playbook,
    step_id: str,
    done: bool,
    notes: str | None,
    actor: str,
    clock: Clock,
    health: HealthStatus,
    keep_notes: bool = False,
) -> CompleteResult:
    """Mark a step done (or not done again). Audited GO_STEP_SET, tagged with
    the active session, which also records the step as completed in it.

    Marking a step done is refused (ConflictError) while it is blocked or
    needs a better band, judged inside the write's transaction (a band moved
    just before is seen); undoing is always allowed. ``keep_notes`` leaves
    the stored notes as they are (the request did not mention them).
    ``health``: the published light.
    """
    if playbook.get(step_id) is None:
        known = ", ".join(s.id for s in playbook.steps)
        raise NotFoundError(f"unknown step {step_id!r}; known steps: {known}")
    with store.transaction() as txn:
        progress = read_progress(txn)
        if done:
            cone = get_cone_state(store=txn)
            checklist = checklist_of(playbook, progress, cone, with_cone(health, cone))
            step = next(s for s in checklist.steps if s.id == step_id)
            if not step.done and (step.blocked or not step.fits):
                reason = step.fit_reason if not step.fits else step.blocked_reason
                raise ConflictError(f"step {step_id!r} cannot be done now: {reason}")
        previous = progress.get(step_id, StepProgress())
        if keep_notes:
            notes = previous.notes
        progress[step_id] = previous.model_copy(
            update={
                "done": done,
                "notes": notes,
                "updated_at_utc": iso_z(clock()),
                "updated_by": actor,
            }
        )
        write_progress(txn, progress)
        session_id: str | None = None
        raw = session_store.read_session(txn)
        if raw is not None and raw.get("active"):
            session_id = raw.get("id")
            completed = list(raw.get("steps_completed") or [])
            if done and step_id not in completed:
                completed.append(step_id)
                session_store.save_session(txn, {**raw, "steps_completed": completed})
        log_event(
            txn,
            event="GO_STEP_SET",
            payload={"step_id": step_id, "done": done, "notes": notes, "session_id": session_id},
            actor=actor,
            clock=clock,
        )
    return CompleteResult(ok=True, step_id=step_id, done=done, notes=notes, session_id=session_id)
