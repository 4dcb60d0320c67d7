"""Moving all data between two stores (JSON dir <-> database) without loss.

Every document and every log record is copied as it is (audit lines keep
their hash fields, legacy lines stay legacy), then both sides are compared by
counts and by an audit-chain walk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .audit.models import AuditVerifyResult
from .audit.service import verify_chain
from .errors import ConflictError
from .storage.protocol import DOC_GO_SESSION, DOCUMENTS, LOG_SESSIONS, LOGS, Store
from .timeutil import parse_iso, stable_id


@dataclass
class TransferReport:
    documents: list[str] = field(default_factory=list)
    records: dict[str, int] = field(default_factory=dict)
    audit: AuditVerifyResult | None = None


def is_empty(store: Store) -> bool:
    if any(store.read_document(name) is not None for name in DOCUMENTS):
        return False
    return not any(next(iter(store.scan_log(log)), None) for log in LOGS)


def _count(store: Store, log: str) -> int:
    return sum(1 for _ in store.scan_log_forward(log))


def copy_store(source: Store, target: Store) -> TransferReport:
    """Copy everything from ``source`` into an empty ``target`` and check it.

    Raises ConflictError when the target already holds data (nothing is
    merged or overwritten) and ValueError when the copy does not check out.
    """
    if not is_empty(target):
        raise ConflictError(f"{target.describe()} already holds data; copy into an empty one")
    report = TransferReport()
    with target.transaction() as txn:
        # History before the current session: on SQL both are rows of one table.
        for log in LOGS:
            records = (entry.record for entry in source.scan_log_forward(log))
            report.records[log] = txn.append_many(log, records)
        ended = _unarchived_end(source)
        if ended is not None:
            # What the service does before the next start, done now so that both
            # sides count the same history.
            txn.append_log(LOG_SESSIONS, ended)
            report.records[LOG_SESSIONS] += 1
        for name in DOCUMENTS:
            value = source.read_document(name)
            if value is not None:
                txn.write_document(name, value)
                report.documents.append(name)
    _check(source, target, report)
    return report


def _session_id(session: dict[str, Any]) -> str | None:
    if session.get("id"):
        return str(session["id"])
    started = session.get("started_at_utc")
    return stable_id(parse_iso(started), started) if started else None


def _unarchived_end(source: Store) -> dict[str, Any] | None:
    """The source's current session when it ended but is not in its history
    (a data dir of the earlier implementation), with its derived id."""
    session = (source.read_document(DOC_GO_SESSION) or {}).get("session")
    if not session or session.get("active") or not session.get("ended_at_utc"):
        return None
    session_id = _session_id(session)
    last = next(iter(source.scan_log(LOG_SESSIONS)), None)
    if last is not None and last.record.get("id") == session_id:
        return None
    return {**session, "id": session_id}


def _check(source: Store, target: Store, report: TransferReport) -> None:
    problems = []
    for log, copied in report.records.items():
        have = _count(target, log)
        if have != copied:
            problems.append(f"{log}: copied {copied} records, the target has {have}")
    for name in report.documents:
        if name == DOC_GO_SESSION:
            continue  # compared below by session, ids may be derived on SQL
        if source.read_document(name) != target.read_document(name):
            problems.append(f"document {name} differs after the copy")
    src_session = (source.read_document(DOC_GO_SESSION) or {}).get("session")
    dst_session = (target.read_document(DOC_GO_SESSION) or {}).get("session")
    if (src_session is None) != (dst_session is None):
        problems.append("the current session did not survive the copy")
    elif src_session is not None and dst_session is not None:
        for key in ("active", "started_at_utc", "ended_at_utc", "notes"):
            if src_session.get(key) != dst_session.get(key):
                problems.append(f"current session field {key} differs after the copy")
    src_audit, dst_audit = verify_chain(store=source), verify_chain(store=target)
    if (src_audit.ok, src_audit.events, src_audit.legacy_events) != (
        dst_audit.ok,
        dst_audit.events,
        dst_audit.legacy_events,
    ):
        problems.append(f"audit chain differs: source {src_audit}, target {dst_audit}")
    report.audit = dst_audit
    if problems:
        raise ValueError("; ".join(problems))
