"""A client that keeps a live server busy: GO sessions started, a step
completed, ended, in a loop, remembering when each write was acknowledged."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx

from valhalla_gov.audit.service import verify_chain
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.go.session_store import CURRENT, HISTORY
from valhalla_gov.storage.protocol import Store

STEP = "preflight_view_dashboard"


@dataclass
class Workload:
    url: str
    token: str
    # (session id, monotonic time its start / end was acknowledged)
    started: list[tuple[str, float]] = field(default_factory=list)
    ended: list[tuple[str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Workload:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            assert not self._thread.is_alive(), "the workload did not stop"

    def wait_for(self, sessions: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.ended) < sessions:
            assert not self.failures, self.failures
            assert time.monotonic() < deadline, f"only {len(self.ended)} sessions in {timeout}s"
            time.sleep(0.02)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                start = client.post("/core/go/start_session", json={"notes": f"s{n}"})
                if start.status_code != 200:
                    self.failures.append(f"start: {start.status_code} {start.text}")
                    return
                sid = start.json()["id"]
                self.started.append((sid, time.monotonic()))
                step = client.post("/core/go/complete", json={"step_id": STEP, "done": n % 2 == 1})
                if step.status_code != 200:
                    self.failures.append(f"complete: {step.status_code} {step.text}")
                    return
                end = client.post("/core/go/end_session", json={"notes": f"e{n}"})
                if end.status_code != 200 or end.json().get("id") != sid:
                    self.failures.append(f"end: {end.status_code} {end.text}")
                    return
                self.ended.append((sid, time.monotonic()))


def check_backup(store: Store, work: Workload, began: float) -> dict[str, Any]:
    """The backup holds every session acknowledged before ``began``, and no
    half of any session; its chain verifies. Returns what it found."""
    verified = verify_chain(store=store)
    assert verified.ok, verified
    starts: set[str] = set()
    ends: set[str] = set()
    for entry in store.scan_log_forward(AUDIT_LOG):
        record = entry.record
        if record.get("event") == "GO_SESSION_START":
            starts.add(record["payload"]["session_id"])
        elif record.get("event") == "GO_SESSION_END":
            ends.add(record["payload"]["session_id"])
    history = [entry.record for entry in store.scan_log_forward(HISTORY)]
    current = store.read_document(CURRENT)
    sessions = {s["id"] for s in history}
    ended = {s["id"] for s in history if not s.get("active")}
    if current is not None:
        sessions.add(current["id"])
        if not current.get("active"):
            ended.add(current["id"])
    # Acknowledged before the backup began: there, whole.
    for sid, at in work.started:
        if at < began:
            assert sid in sessions, f"started session {sid} missing"
            assert sid in starts, f"the start line of {sid} is missing"
    for sid, at in work.ended:
        if at < began:
            assert sid in ended, f"ended session {sid} missing"
            assert sid in ends, f"the end line of {sid} is missing"
    # No half of one: a session's rows and its audit lines come together.
    assert sessions == starts, (sessions ^ starts, "a session without its start line or back")
    assert ended == ends, (ended ^ ends, "an ended session without its end line or back")
    return {"sessions": len(sessions), "ended": len(ended), "events": verified.events}
