"""A write storm's ledger (what the server acknowledged) and the checks that
every acknowledged operation survived a crash.

Every request carries a unique token (the notes or the reason), so each
acknowledged operation can be found again in the store afterwards: in the
session history or the current session, in the step progress, in the cone
state, and as its own audit event. What the store shows beyond that must come
from a request that was still in flight when the server died (never answered):
with ``atomic=True`` (the SQL backend) not even that may be seen half-done.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx

from valhalla_gov.audit.service import verify_chain
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.cone.canon import ACTIONS, BANDS, load_canon
from valhalla_gov.cone.store import CONE_STATE, DECISIONS
from valhalla_gov.go import session_store
from valhalla_gov.go.playbook import load_playbook
from valhalla_gov.go.session_store import HISTORY
from valhalla_gov.go.store import PROGRESS
from valhalla_gov.storage.protocol import Store
from valhalla_gov.timeutil import parse_iso

KINDS = ("start", "end", "complete", "cone", "decide")
WEIGHTS = (25, 25, 20, 15, 15)
STEPS = [step.id for step in load_playbook(None).steps]
ENGINES = load_canon(None).engines()
# A 409 is a correct answer here: a start while a session is active, a step
# that is blocked or needs a better band. It changed nothing.
REFUSALS = {("start", 409), ("complete", 409)}


@dataclass(frozen=True)
class Ack:
    """One acknowledged (2xx) operation: what was asked and what was answered."""

    kind: str
    token: str
    request: dict[str, Any]
    body: dict[str, Any]


@dataclass
class Ledger:
    """What the clients of a storm saw, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acks: list[Ack] = field(default_factory=list)
    # Sent, never answered (the server died): may or may not have happened.
    in_flight: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in KINDS})
    refused: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)

    def add_ack(self, ack: Ack) -> None:
        with self.lock:
            self.acks.append(ack)

    def answered(
        self, kind: str, token: str, request: dict[str, Any], resp: httpx.Response
    ) -> None:
        if 200 <= resp.status_code < 300:
            self.add_ack(Ack(kind, token, request, resp.json()))
            return
        with self.lock:
            if (kind, resp.status_code) in REFUSALS:
                self.refused[f"{kind} {resp.status_code}"] += 1
            else:
                self.unexpected.append(f"{kind} {request} -> {resp.status_code} {resp.text[:300]}")

    def lost(self, kind: str, token: str) -> None:
        with self.lock:
            self.in_flight[kind].add(token)

    def acked_by_kind(self) -> dict[str, int]:
        counts = Counter(ack.kind for ack in self.acks)
        return {kind: counts[kind] for kind in KINDS}


def build_request(kind: str, token: str, rng: random.Random) -> dict[str, Any]:
    """One request of the storm, with ``token`` as its notes or reason."""
    if kind == "start":
        return {"method": "POST", "url": "/core/go/start_session", "json": {"notes": token}}
    if kind == "end":
        return {"method": "POST", "url": "/core/go/end_session", "json": {"notes": token}}
    if kind == "complete":
        body = {"step_id": rng.choice(STEPS[:4]), "done": rng.random() < 0.8, "notes": token}
        return {"method": "POST", "url": "/core/go/complete", "json": body}
    if kind == "cone":
        body = {"band": rng.choice(BANDS), "reason": token}
        return {"method": "POST", "url": "/core/cone/state", "json": body}
    params = {"engine": rng.choice(ENGINES), "action": rng.choice(ACTIONS)}
    return {"method": "GET", "url": "/core/cone/decide", "params": params}


def storm_worker(
    url: str,
    ledger: Ledger,
    stop: threading.Event,
    rng: random.Random,
    tag: str,
    headers: dict[str, str],
) -> None:
    """Send random writes (with ``headers``: the credential) until told to
    stop or the server dies under us."""
    with httpx.Client(base_url=url, timeout=20, headers=headers) as http:
        for n in itertools.count():
            if stop.is_set():
                return
            kind = rng.choices(KINDS, weights=WEIGHTS)[0]
            token = f"{tag}-{n}"
            request = build_request(kind, token, rng)
            try:
                resp = http.request(**request)
            except httpx.TransportError:
                ledger.lost(kind, token)
                return
            ledger.answered(kind, token, request, resp)


# -- checks ----------------------------------------------------------------


def check_files_parse(data_dir: Path) -> dict[str, int]:
    """Every document parses; every complete log line parses as an object.

    A log may end in an unfinished line (an append the kill cut short: never
    acknowledged, set aside by the next append); temp files of an unfinished
    document write may stay behind (never read). Both are counted.
    """
    seen = Counter[str]()
    for path in sorted(data_dir.iterdir()):
        name, raw = path.name, path.read_bytes()
        if name.endswith(".json"):
            try:
                json.loads(raw)
            except ValueError as exc:
                raise AssertionError(f"{path} does not parse after the crash: {exc}") from exc
            seen["documents"] += 1
        elif name.endswith((".jsonl", ".log")):
            whole, _, tail = raw.rpartition(b"\n")
            for number, line in enumerate(whole.split(b"\n"), start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError as exc:
                    raise AssertionError(f"{path} line {number} does not parse: {exc}") from exc
                assert isinstance(value, dict), f"{path} line {number} is not an object"
                seen["log_lines"] += 1
            if tail.strip():
                seen["torn_tails"] += 1
        elif name.endswith(".tmp"):
            seen["temp_files"] += 1
        elif ".torn-" in name:
            seen["torn_side_files"] += 1
        elif name.endswith((".kinds", ".token")):
            # A log's kind index (derived, unsynced, checked and rebuilt by
            # its readers, so a crash may leave it in any state), or the owner
            # credential (written once, whole, at the first start).
            seen["derived_indexes" if name.endswith(".kinds") else "credentials"] += 1
        elif name != ".valhalla.lock" and not name.startswith(".probe."):
            raise AssertionError(f"unexpected file in the data dir: {path}")
    return dict(seen)


@dataclass
class _Seen:
    """The store's content, indexed for the checks."""

    history: list[dict[str, Any]]
    current: dict[str, Any] | None
    audit: list[dict[str, Any]]
    decisions: int
    cone: dict[str, Any] | None
    progress: dict[str, Any]

    def events(self, *names: str) -> list[dict[str, Any]]:
        return [r["payload"] for r in self.audit if r.get("event") in names]


def _read(store: Store) -> _Seen:
    progress_doc = store.read_document(PROGRESS) or {}
    return _Seen(
        history=[e.record for e in store.scan_log_forward(HISTORY)],
        current=session_store.load_session(store=store),
        audit=[e.record for e in store.scan_log_forward(AUDIT_LOG)],
        decisions=sum(1 for _ in store.scan_log_forward(DECISIONS)),
        cone=store.read_document(CONE_STATE),
        progress=dict(progress_doc.get("progress") or {}),
    )


END_FIELDS = ("ended_at_utc", "end_notes", "notes", "duration_seconds", "ended_by")


@dataclass
class _Check:
    """One pass over the store: what it holds, indexed, and what is wrong."""

    seen: _Seen
    ledger: Ledger
    atomic: bool
    problems: list[str] = field(default_factory=list)
    partial: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.history = {s["id"]: s for s in self.seen.history}
        self.sessions = dict(self.history)
        current = self.seen.current
        if current is not None:
            self.sessions.setdefault(current["id"], current)
        self.started = {p["session_id"] for p in self.seen.events("GO_SESSION_START")}
        self.ended = {p["session_id"] for p in self.seen.events("GO_SESSION_END")}
        self.step_sets = self.seen.events("GO_STEP_SET")
        self.cone_sets = self.seen.events("CONE_SET")

    def sessions_never_overlap(self) -> None:
        """One active session at most: the history is ended sessions in order,
        each starting after the one before ended, the active one after all."""
        ids = [s["id"] for s in self.seen.history]
        twice = sorted(Counter(ids) - Counter(set(ids)))
        if twice:
            self.problems.append(f"sessions archived twice: {twice}")
        for session in self.seen.history:
            if session["active"]:
                self.problems.append(f"history holds an active session: {session['id']}")
        for earlier, later in itertools.pairwise(self.seen.history):
            if parse_iso(later["started_at_utc"]) < parse_iso(earlier["ended_at_utc"]):
                self.problems.append(f"sessions overlap: {earlier['id']} and {later['id']}")
        current = self.seen.current
        if current is None or not current["active"] or not self.seen.history:
            return
        last_end = parse_iso(self.seen.history[-1]["ended_at_utc"])
        if parse_iso(current["started_at_utc"]) < last_end and current["id"] not in self.history:
            self.problems.append(f"the active session {current['id']} overlaps the last one")

    def start_is_there(self, ack: Ack) -> None:
        if ack.body["id"] not in self.sessions:
            self.problems.append(f"acknowledged start lost: {ack.body['id']} ({ack.token})")
        if ack.body["id"] not in self.started:
            self.problems.append(f"acknowledged start not audited: {ack.body['id']}")

    def end_is_there(self, ack: Ack) -> None:
        body = ack.body
        if not body.get("ended_at_utc"):
            return  # no session was ever started: nothing to end
        kept = self.history.get(body["id"])
        if kept is None:
            self.problems.append(f"acknowledged end lost from the history: {body['id']}")
            return
        differ = {k: (kept.get(k), body.get(k)) for k in END_FIELDS if kept.get(k) != body.get(k)}
        if differ:
            self.problems.append(
                f"the history keeps another end of {body['id']} than the one acknowledged "
                f"({ack.token}): (history, acknowledged) {differ}"
            )
        # An end answered "already ended" changed nothing itself: whether the
        # end that did is audited is every_change_is_audited's question.
        if body.get("end_notes") == ack.token and body["id"] not in self.ended:
            self.problems.append(f"acknowledged end not audited: {body['id']}")

    def step_is_there(self, ack: Ack) -> None:
        wanted = (ack.request["json"]["step_id"], ack.body["done"], ack.token)
        if not any((p["step_id"], p["done"], p["notes"]) == wanted for p in self.step_sets):
            self.problems.append(f"acknowledged step change not audited: {wanted}")
        session_id = ack.body["session_id"]
        if not ack.body["done"] or session_id is None:
            return
        session = self.sessions.get(session_id)
        if session is not None and wanted[0] in session.get("steps_completed", []):
            return
        self.problems.append(f"{wanted[0]} missing from session {session_id}")

    def cone_is_there(self, ack: Ack) -> None:
        wanted = (ack.request["json"]["band"], ack.token)
        if not any((p["to"], p["reason"]) == wanted for p in self.cone_sets):
            self.problems.append(f"acknowledged cone change not audited: {wanted}")

    def decisions_are_there(self) -> None:
        acked = sum(1 for ack in self.ledger.acks if ack.kind == "decide")
        audited = len(self.seen.events("CONE_ALLOW", "CONE_DENY"))
        if audited < acked or self.seen.decisions < acked:
            self.problems.append(
                f"acknowledged decisions lost: {acked} acknowledged, {audited} audited, "
                f"{self.seen.decisions} in the decisions log"
            )
        extra = self.seen.decisions - audited
        if extra < 0:
            self.problems.append(f"{-extra} audited decisions are missing from the decisions log")
        elif extra:
            self.unexplained(f"{extra} decisions without an audit line", "decide", None, extra)

    def unexplained(self, what: str, kind: str, token: str | None, count: int = 1) -> None:
        """A change without its audit event: only a request in flight at the
        kill may have left it, and only where operations are not atomic."""
        self.partial[kind] += count
        in_flight = self.ledger.in_flight[kind]
        explained = (token in in_flight) if token is not None else len(in_flight) >= count
        if self.atomic or not explained:
            self.problems.append(f"{what} (not acknowledged, not audited, not in flight)")

    def every_change_is_audited(self) -> None:
        for sid, session in self.sessions.items():
            if sid not in self.started:
                what = f"session {sid} has no GO_SESSION_START"
                self.unexplained(what, "start", session.get("start_notes"))
            if session.get("ended_at_utc") and sid not in self.ended:
                what = f"session {sid} ended without GO_SESSION_END"
                self.unexplained(what, "end", session.get("end_notes"))
        current = self.seen.current
        if current is not None and current["active"]:
            if current["id"] in self.history:
                what = f"session {current['id']} is ended in the history, active in the document"
                self.unexplained(what, "end", self.history[current["id"]]["end_notes"])
            done_here = {p["step_id"] for p in self.step_sets if p["session_id"] == current["id"]}
            for step in set(current.get("steps_completed", [])) - done_here:
                what = f"{step} completed in {current['id']} without an audit"
                self.unexplained(what, "complete", None)
        cone = self.seen.cone
        last_cone = self.cone_sets[-1] if self.cone_sets else None
        if cone is not None and (last_cone is None or last_cone["reason"] != cone["reason"]):
            self.unexplained("the cone state is not the last CONE_SET", "cone", cone["reason"])
        last_step = {p["step_id"]: p for p in self.step_sets}
        for step, progress in self.seen.progress.items():
            audited = last_step.get(step)
            now = (progress["done"], progress["notes"])
            if audited is None or (audited["done"], audited["notes"]) != now:
                what = f"progress of {step} is not its last GO_STEP_SET"
                self.unexplained(what, "complete", progress["notes"])


def check_store(store: Store, ledger: Ledger, *, atomic: bool) -> dict[str, int]:
    """Assert every invariant and every acknowledged operation; return counts.

    ``atomic``: every operation is all there or not at all (SQL). Without it
    (the JSON files after kill -9), a change the audit does not explain is
    allowed only when it carries the token of a request that was in flight.

    """
    chain = verify_chain(store=store)
    assert chain.ok, f"the audit chain does not verify after the crash: {chain}"
    check = _Check(_read(store), ledger, atomic)
    check.sessions_never_overlap()
    for ack in ledger.acks:
        if ack.kind == "start":
            check.start_is_there(ack)
        elif ack.kind == "end":
            check.end_is_there(ack)
        elif ack.kind == "complete":
            check.step_is_there(ack)
        elif ack.kind == "cone":
            check.cone_is_there(ack)
    check.decisions_are_there()
    check.every_change_is_audited()
    assert not check.problems, "after the crash:\n  " + "\n  ".join(check.problems)
    return {
        "audit_events": len(check.seen.audit),
        "sessions": len(check.sessions),
        "unacknowledged_partial": sum(check.partial.values()),
    }
