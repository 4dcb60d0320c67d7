"""A crash at every durable write of every operation (JSON backend).

The kill -9 storm lands wherever the timing puts it; this test visits every
crash point on purpose. A forked child runs one operation on a copy of a
prepared data dir and dies (``os._exit``, no rollback, no cleanup: what
kill -9 leaves) either just before its k-th durable write or half-way
through it (half a temp file, half a log line). The parent then checks the
files, the chain and every acknowledged operation, goes on with a series of
acknowledged operations as the next user would, and checks again.
"""

from __future__ import annotations

import itertools
import os
import shutil
import traceback
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import health_now, wait_child
from tests.reliability.conftest import Record
from tests.reliability.storm import Ack, Ledger, check_files_parse, check_store
from valhalla_gov.compose import open_json
from valhalla_gov.cone import service as cone_service
from valhalla_gov.cone.canon import load_canon
from valhalla_gov.errors import ConflictError
from valhalla_gov.go import service as go_service
from valhalla_gov.go import session_service
from valhalla_gov.go.playbook import load_playbook
from valhalla_gov.storage import json_store
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.timeutil import utc_now

pytestmark = [pytest.mark.reliability]

CANON = load_canon(None)
PLAYBOOK = load_playbook(None)
ACTOR = "crash-test"
CRASHED, COMPLETED, FAILED = 70, 71, 72


def request_of(kind: str, token: str) -> dict[str, Any]:
    if kind in ("start", "end"):
        return {"json": {"notes": token}}
    if kind == "complete":
        steps = {"op": "intake_ready", "after": "lead_log_ready"}
        step = steps.get(token.partition("-")[0], "preflight_view_dashboard")
        return {"json": {"step_id": step, "done": True, "notes": token}}
    if kind == "cone":
        return {"json": {"band": "A" if token.startswith("op") else "B", "reason": token}}
    return {"params": {"engine": "wholesaling", "action": "run"}}


def run_op(store: JsonStore, kind: str, token: str) -> dict[str, Any]:
    """One operation through the services, as a request would run it."""
    request = request_of(kind, token)
    if kind == "start":
        return session_service.start_session(
            store=store, clock=utc_now, actor=ACTOR, notes=token, health=health_now(store)
        ).model_dump()
    if kind == "end":
        return session_service.end_session(
            store=store, clock=utc_now, actor=ACTOR, notes=token, health=health_now(store)
        ).model_dump()
    if kind == "complete":
        return go_service.complete_step(
            store=store,
            health=health_now(store),
            playbook=PLAYBOOK,
            step_id=request["json"]["step_id"],
            done=True,
            notes=token,
            actor=ACTOR,
            clock=utc_now,
        ).model_dump()
    if kind == "cone":
        return cone_service.set_cone_state(
            store=store,
            band=request["json"]["band"],
            reason=token,
            metrics=None,
            actor=ACTOR,
            clock=utc_now,
        ).model_dump()
    return cone_service.decide(
        store=store, canon=CANON, engine="wholesaling", action="run", actor=ACTOR, clock=utc_now
    ).model_dump()


def acknowledge(store: JsonStore, ledger: Ledger, kind: str, token: str) -> None:
    try:
        body = run_op(store, kind, token)
    except ConflictError:
        ledger.refused[f"{kind} 409"] += 1
        return
    ledger.add_ack(Ack(kind, token, request_of(kind, token), body))


# What is there before the crashing operation runs.
PREFIX: dict[str, list[str]] = {
    "start": ["cone", "start", "complete", "end"],
    "end": ["cone", "start", "complete"],
    "complete": ["cone", "start"],
    "cone": ["cone", "start"],
    "decide": ["cone", "start", "decide"],
}
# What the next user does after the restart, each acknowledged.
AFTER = ["complete", "end", "start", "complete", "cone", "decide", "end", "start"]


def _crash_at(k: int, torn: bool) -> None:
    """Patch the two durable writes so that the k-th one dies (in this child)."""
    calls = itertools.count(1)
    write_atomic, append_line = json_store.write_bytes_atomic, json_store.append_line

    def crashing_write(path: Path, payload: bytes) -> None:
        if next(calls) == k:
            if torn:  # half the temp file, never renamed into place
                tmp = path.with_name(f".{path.name}.{os.getpid()}.0.tmp")
                tmp.write_bytes(payload[: len(payload) // 2])
            os._exit(CRASHED)
        write_atomic(path, payload)

    def crashing_append(path: Path, line: bytes) -> int:
        if next(calls) == k:
            if torn:  # half the line, no newline
                with open(path, "ab") as fh:
                    fh.write(line[: len(line) // 2])
            os._exit(CRASHED)
        return append_line(path, line)

    json_store.write_bytes_atomic = crashing_write
    json_store.append_line = crashing_append


def crash_in_child(data_dir: Path, kind: str, token: str, k: int, torn: bool) -> int:
    """Run ``kind`` in a forked child that dies at write ``k``; its exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = FAILED
        try:
            _crash_at(k, torn)
            run_op(open_json(data_dir), kind, token)
            code = COMPLETED
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return wait_child(pid, timeout=60)


def visit_crash_points(tmp_path: Path, kind: str) -> dict[str, int]:
    template = tmp_path / "template"
    base = Ledger()
    store = open_json(template)
    for n, prefix_kind in enumerate(PREFIX[kind]):
        acknowledge(store, base, prefix_kind, f"prefix-{n}")
    points = recovered = 0
    for k in itertools.count(1):
        reached = False
        for torn in (False, True):
            label = f"{kind} write {k} {'torn' if torn else 'cut before'}"
            data_dir = tmp_path / f"k{k}-{'torn' if torn else 'cut'}"
            shutil.copytree(template, data_dir)
            ledger = Ledger(acks=list(base.acks))
            token = f"op-{k}-{torn}"
            code = crash_in_child(data_dir, kind, token, k, torn)
            assert code in (CRASHED, COMPLETED), f"{label}: the child failed ({code})"
            if code == COMPLETED:
                break
            reached = True
            points += 1
            ledger.lost(kind, token)
            try:
                check_files_parse(data_dir)
                check_store(open_json(data_dir), ledger, atomic=False)
                store = open_json(data_dir)
                for n, next_kind in enumerate(AFTER):
                    acknowledge(store, ledger, next_kind, f"after-{n}")
                check_files_parse(data_dir)
                check_store(open_json(data_dir), ledger, atomic=False)
            except AssertionError as exc:
                raise AssertionError(f"crash at {label}: {exc}") from None
            recovered += 1
        if not reached:
            return {"crash_points": points, "recovered": recovered, "writes": k - 1}
    raise AssertionError("unreachable")


@pytest.mark.parametrize("kind", ["start", "end", "complete", "cone", "decide"])
def test_a_crash_at_any_write_loses_nothing_acknowledged(
    tmp_path: Path, kind: str, record_figures: Record
) -> None:
    figures = visit_crash_points(tmp_path, kind)
    assert figures["crash_points"] >= 2, f"{kind}: no write was reached: {figures}"
    record_figures(f"crash_points_{kind}", figures)
