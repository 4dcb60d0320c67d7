"""Moving all data between two stores (JSON dir <-> database) without loss.

Every declared document and every log record is copied as it is (audit lines
keep their hash fields, legacy lines stay legacy), then both sides are
compared by counts, by document and by an audit-chain walk. A feature whose
data needs more than a plain copy says so in its ``Feature.transfer`` hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .audit.models import AuditVerifyResult
from .audit.service import verify_chain
from .compose import FEATURES
from .errors import ConflictError
from .storage.protocol import Document, Store


@dataclass
class TransferReport:
    documents: list[str] = field(default_factory=list)
    records: dict[str, int] = field(default_factory=dict)
    audit: AuditVerifyResult | None = None


def is_empty(store: Store) -> bool:
    if any(store.read_document(doc) is not None for doc in store.schema.documents):
        return False
    return not any(next(iter(store.scan_log(log)), None) for log in store.schema.logs)


def copy_store(source: Store, target: Store) -> TransferReport:
    """Copy everything from ``source`` into an empty ``target`` and check it.

    Raises ConflictError when the target already holds data (nothing is
    merged or overwritten) and ValueError when the copy does not check out.
    """
    if not is_empty(target):
        raise ConflictError(f"{target.describe()} already holds data; copy into an empty one")
    report = TransferReport()
    with target.transaction() as txn:
        # Logs before documents: on SQL a document may be a view over a log's rows.
        for log in source.schema.logs:
            copied = (entry.record for entry in source.scan_log_forward(log))
            report.records[log.name] = txn.append_many(log, copied)
        for feature in FEATURES:
            extra = feature.transfer.extra_records
            for log, records in (extra(source) if extra is not None else {}).items():
                report.records[log.name] += txn.append_many(log, records)
        for doc in source.schema.documents:
            value = source.read_document(doc)
            if value is not None:
                txn.write_document(doc, value)
                report.documents.append(doc.name)
    _check(source, target, report)
    return report


def _normalised(doc: Document, value: Any) -> Any:
    for feature in FEATURES:
        if feature.transfer.normalise is not None:
            value = feature.transfer.normalise(doc, value)
    return value


def _check(source: Store, target: Store, report: TransferReport) -> None:
    problems = []
    for log in target.schema.logs:
        copied = report.records.get(log.name, 0)
        have = sum(1 for _ in target.scan_log_forward(log))
        if have != copied:
            problems.append(f"{log.name}: copied {copied} records, the target has {have}")
    for doc in source.schema.documents:
        before = _normalised(doc, source.read_document(doc))
        if before != _normalised(doc, target.read_document(doc)):
            problems.append(f"document {doc.name} differs after the copy")
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
