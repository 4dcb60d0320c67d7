"""Power loss at every point of every JSON operation loses nothing acknowledged.

A scenario of every operation on the JSON files (start, complete, cone set,
decide, end, a bulk append, and three operations that fail at an fsync and
take themselves back) runs on a real data dir while ``tests/reliability/
powerloss.py`` records each call by which ``json_store`` changes a file. Then
every state a power cut may leave, at every point of that trace, is rebuilt
in a fresh directory and checked:

- every document parses, every complete log line parses (an unfinished last
  line is allowed: never acknowledged, set aside by the next append);
- every operation acknowledged before the cut is there, the chain verifies,
  and every change the audit log does not explain belongs to the operation
  that was running at the cut;
- an operation that failed and answered so before the cut left nothing
  behind (its token is in no file that is ever read);
- the next user's operations succeed on it, and the checks hold again.

``make mutate-fsync`` (``tests/reliability/mutate_fsync.py``) removes each
fsync of ``json_store.py`` in turn and runs this test against each mutant.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import Record
from tests.reliability.powerloss import Fault, Recorder, crash_states, materialise, state_key
from tests.reliability.storm import Ack, Ledger, check_files_parse, check_store
from tests.reliability.test_crash_points import acknowledge, request_of, run_op
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json
from valhalla_gov.errors import ConflictError
from valhalla_gov.health.store import SERVER_ERRORS
from valhalla_gov.storage import json_store
from valhalla_gov.storage.errors import StorageUnavailableError
from valhalla_gov.storage.json_backend import JsonStore

pytestmark = [pytest.mark.reliability]

BULK = 3  # records per bulk append
# Half an audit line an earlier crash left: set aside, it must never be lost.
TORN = b'{"event":"GO_SESSION_START","payload":{"notes":"torn'

AUDIT, ERRORS = AUDIT_LOG.file, SERVER_ERRORS.file


@dataclass(frozen=True)
class Step:
    kind: str  # start, end, complete, cone, decide or bulk
    token: str
    fault: str | None = None  # this file's first fsync fails: the step takes itself back


SCENARIO = [
    Step("start", "op-1"),  # its first append sets the torn audit tail aside
    Step("complete", "op-2", fault=AUDIT),  # the first go_progress.json is removed again
    Step("complete", "op-3"),
    Step("cone", "op-4"),
    Step("decide", "op-5"),
    Step("bulk", "op-6"),  # a new log, created by a bulk append
    Step("bulk", "op-7", fault=ERRORS),  # cut back to its old length
    Step("cone", "op-8", fault=AUDIT),  # cone_state.json gets its old bytes back
    Step("decide", "op-8b", fault=AUDIT),  # the decision line is cut off again
    Step("end", "op-9"),
    Step("start", "op-10"),
    Step("end", "op-11"),
]
# What the next user does on the data a power cut left, each acknowledged.
NEXT = ["start", "complete", "end", "decide"]


@dataclass
class Outcome:
    step: Step
    begin: int  # trace position of its first call
    end: int  # trace position just after its last call
    ack: Ack | None
    failed: bool


def bulk(store: JsonStore, token: str) -> None:
    # Old timestamps: health counts recent server errors, and must stay green.
    records = [
        {"ts_utc": "2000-01-01T00:00:00Z", "method": "BULK", "path": token, "error": str(n)}
        for n in range(BULK)
    ]
    with store.transaction() as txn:
        txn.append_many(SERVER_ERRORS, records)


def run_scenario(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Recorder, list[Ack], list[Outcome]]:
    store = open_json(data_dir)
    before = Ledger()
    for n, kind in enumerate(["cone", "start", "end"]):
        acknowledge(store, before, kind, f"prefix-{n}")
    # What an earlier crash left: half an audit line (durable, like all of the start).
    with open(data_dir / AUDIT, "ab") as fh:
        fh.write(TORN)
    recorder = Recorder(data_dir)
    monkeypatch.setattr(json_store, "fs", recorder)
    outcomes: list[Outcome] = []
    for step in SCENARIO:
        begin = len(recorder.trace)
        recorder.fault = None if step.fault is None else Fault(step.fault)
        ack: Ack | None = None
        failed = False
        try:
            if step.kind == "bulk":
                bulk(store, step.token)
                ack = Ack("bulk", step.token, {}, {})
            else:
                body = run_op(store, step.kind, step.token)
                ack = Ack(step.kind, step.token, request_of(step.kind, step.token), body)
        except StorageUnavailableError:
            failed = True
        except ConflictError as exc:
            raise AssertionError(f"{step}: refused ({exc}); the scenario is wrong") from None
        # A fault that never fired (its fsync is gone) is reported after the
        # crash states are checked: what they show is the finding.
        outcomes.append(Outcome(step, begin, len(recorder.trace), ack, failed))
    monkeypatch.setattr(json_store, "fs", json_store.FileOps())
    return recorder, before.acks, outcomes


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    whole = path.read_bytes().rpartition(b"\n")[0]
    return [json.loads(line) for line in whole.split(b"\n") if line.strip()]


def _read_files(directory: Path) -> Iterator[tuple[str, bytes]]:
    """Every file a reader ever opens: temp files of an unfinished document
    write and the side copies of torn lines are never read."""
    for path in sorted(directory.iterdir()):
        if path.name.endswith(".tmp") or ".torn-" in path.name:
            continue
        yield path.name, path.read_bytes()


def check_state(
    directory: Path, ledger: Ledger, done: list[Outcome], running: Outcome | None
) -> None:
    check_files_parse(directory)
    check_store(open_json(directory), ledger, atomic=False)
    # The torn bytes are at the end of the log still, or in a side copy.
    kept = (directory / AUDIT).read_bytes().endswith(TORN) or any(
        path.read_bytes() == TORN for path in directory.glob(f"{AUDIT}.torn-*")
    )
    assert kept, "the torn audit line was neither left in place nor kept aside"
    errors = _lines(directory / ERRORS)
    for outcome in done:
        token = outcome.step.token
        if outcome.failed:
            for name, raw in _read_files(directory):
                assert token.encode() not in raw, f"failed {outcome.step} left its token in {name}"
        elif outcome.step.kind == "bulk":
            mine = [r for r in errors if r["path"] == token]
            assert len(mine) == BULK, f"acknowledged {outcome.step}: {len(mine)} of {BULK} records"
    if running is not None and running.step.kind == "bulk":
        assert len([r for r in errors if r["path"] == running.step.token]) <= BULK


def visit_power_cuts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    recorder, before, outcomes = run_scenario(tmp_path / "data", monkeypatch)
    seen: set[tuple[str, int, int]] = set()
    states = 0
    for point in range(len(recorder.trace) + 1):
        done = [o for o in outcomes if o.end <= point]
        running = next((o for o in outcomes if o.begin < point < o.end), None)
        for files in crash_states(recorder, point):
            key = (state_key(files), len(done), -1 if running is None else outcomes.index(running))
            if key in seen:
                continue
            seen.add(key)
            states += 1
            ledger = Ledger(
                acks=[*before, *(o.ack for o in done if o.ack and o.ack.kind != "bulk")]
            )
            if running is not None and running.step.kind != "bulk":
                ledger.lost(running.step.kind, running.step.token)
            directory = materialise(files, tmp_path / f"cut-{states}")
            label = f"power cut after call {point} of {len(recorder.trace)}"
            if running is not None:
                label += f" (during {running.step})"
            try:
                check_state(directory, ledger, done, running)
                store = open_json(directory)
                for n, kind in enumerate(NEXT):
                    acknowledge(store, ledger, kind, f"after-{n}")
                check_state(directory, ledger, done, running)
            except (AssertionError, StorageUnavailableError, ValueError) as exc:
                files_now = sorted(p.name for p in directory.iterdir())
                raise AssertionError(f"{label}: {exc}\nfiles: {files_now}") from None
    kinds = {e.kind for e in recorder.trace}
    unfired = [o.step for o in outcomes if o.step.fault is not None and not o.failed]
    assert not unfired, f"these faults never fired (no fsync of the file to fail): {unfired}"
    return {
        "calls": len(recorder.trace),
        "fsyncs": sum(e.kind == "fsync" for e in recorder.trace),
        "dir_fsyncs": sum(e.kind == "fsync_dir" for e in recorder.trace),
        "crash_points": len(recorder.trace) + 1,
        "crash_states_checked": states,
        "operations": len(outcomes),
        "call_kinds": len(kinds),
    }


def test_a_power_cut_at_any_point_loses_nothing_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_figures: Record
) -> None:
    figures = visit_power_cuts(tmp_path, monkeypatch)
    # Every kind of call was exercised, or the scenario no longer covers the code.
    assert figures["call_kinds"] == 7, figures
    record_figures("power_loss", figures)
