"""Moving all data between two stores (JSON dir <-> database) without loss,
and taking an online backup of either into a JSON data dir.

Every declared document and every log record is copied as it is (audit lines
keep their hash fields, legacy lines stay legacy) from one consistent
snapshot of the source (:meth:`Store.snapshot`), then the copy is checked
against what that snapshot held: counts per log, every document, and an
audit-chain walk. A feature whose data needs more than a plain copy says so
in its ``Feature.transfer`` hooks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, cast

from .audit.models import AuditVerifyResult
from .audit.service import verify_chain
from .auth.owner_file import OWNER_FILE
from .compose import FEATURES, open_json
from .errors import ConflictError
from .storage import json_store
from .storage.protocol import Document, Snapshot, Store

# Files of a data dir that belong to the data but are not in the store: the
# secrets it was made with. A backup of a data dir copies them (0600);
# without them a restored data dir could not check what they signed, nor
# its owner sign in. Import and export copy the store only: the owner
# credential stays with its data dir (the store keeps its digest, never the
# credential). One name per line.
DATA_DIR_SECRETS: tuple[str, ...] = (
    "webhook.key",  # the webhook master key (webhooks/keys.py)
    OWNER_FILE,  # the owner credential (auth/owner_file.py)
)


# Records appended per call while copying a log.
_RUN = 50_000


class BrokenChainError(Exception):
    """The source's audit chain does not verify: it is not copied in silence."""

    def __init__(self, result: AuditVerifyResult) -> None:
        super().__init__(
            f"the source's audit chain is BROKEN at seq {result.first_bad_seq}: {result.detail}"
        )
        self.result = result


@dataclass
class TransferReport:
    documents: list[str] = field(default_factory=list)
    records: dict[str, int] = field(default_factory=dict)
    audit: AuditVerifyResult | None = None
    source_audit: AuditVerifyResult | None = None
    secrets: list[str] = field(default_factory=list)
    # Each declared document as the snapshot held it (normalised), to check
    # the copy against once the snapshot is released.
    expected: dict[str, Any] = field(default_factory=dict, repr=False)


def is_empty(store: Store) -> bool:
    if any(store.read_document(doc) is not None for doc in store.schema.documents):
        return False
    return not any(next(iter(store.scan_log(log)), None) for log in store.schema.logs)


def _reading(snapshot: Snapshot) -> Store:
    # verify_chain and the transfer hooks only read (read_document and the
    # log scans), which is what a snapshot offers; tests/ops hold them to it.
    return cast(Store, snapshot)


def copy_store(source: Store, target: Store) -> TransferReport:
    """Copy everything from ``source`` (one snapshot of it) into an empty
    ``target`` and check it.

    Raises ConflictError when the target already holds data (nothing is
    merged or overwritten) and ValueError when the copy does not check out.
    """
    if not is_empty(target):
        raise ConflictError(f"{target.describe()} already holds data; copy into an empty one")
    with source.snapshot() as snapshot:
        report = _copy(snapshot, target, verify_chain(store=_reading(snapshot)))
    _check(target, report)
    return report


def _copy(source: Snapshot, target: Store, source_audit: AuditVerifyResult) -> TransferReport:
    report = TransferReport(source_audit=source_audit)
    with target.transaction() as txn:
        # Logs before documents: on SQL a document may be a view over a log's rows.
        for log in source.schema.logs:
            stream = (entry.record for entry in source.scan_log_forward(log))
            report.records[log.name] = 0
            # In runs: a backend may keep what it appends in one call in
            # memory until it returns (the JSON kind index does).
            while run := list(islice(stream, _RUN)):
                report.records[log.name] += txn.append_many(log, run)
        for feature in FEATURES:
            extra = feature.transfer.extra_records
            for log, records in (extra(_reading(source)) if extra is not None else {}).items():
                report.records[log.name] += txn.append_many(log, records)
        for doc in source.schema.documents:
            value = source.read_document(doc)
            report.expected[doc.name] = _normalised(doc, value)
            if value is not None:
                txn.write_document(doc, value)
                report.documents.append(doc.name)
    return report


def _normalised(doc: Document, value: Any) -> Any:
    for feature in FEATURES:
        if feature.transfer.normalise is not None:
            value = feature.transfer.normalise(doc, value)
    return value


def _check(target: Store, report: TransferReport) -> None:
    """The copy against what the source's snapshot held."""
    problems = []
    for log in target.schema.logs:
        copied = report.records.get(log.name, 0)
        have = sum(len(records) for _, records in target.scan_log_bulk(log))
        if have != copied:
            problems.append(f"{log.name}: copied {copied} records, the target has {have}")
    for doc in target.schema.documents:
        if report.expected.get(doc.name) != _normalised(doc, target.read_document(doc)):
            problems.append(f"document {doc.name} differs after the copy")
    src_audit, dst_audit = report.source_audit, verify_chain(store=target)
    if src_audit is None or (src_audit.ok, src_audit.events, src_audit.legacy_events) != (
        dst_audit.ok,
        dst_audit.events,
        dst_audit.legacy_events,
    ):
        problems.append(f"audit chain differs: source {src_audit}, target {dst_audit}")
    report.audit = dst_audit
    if problems:
        raise ValueError("; ".join(problems))


def backup(
    source: Store,
    target_dir: Path,
    *,
    secrets: Mapping[str, Path] | None = None,
    allow_broken_chain: bool = False,
) -> TransferReport:
    """Copy one snapshot of ``source`` into a new private JSON data dir at
    ``target_dir`` (missing or empty), with the secret files ``secrets``
    names (backup name -> file; missing ones are skipped), and check it.

    The copy is made in a sibling directory and renamed into place once it
    checks out, so ``target_dir`` never holds half a backup. Raises
    ConflictError for a target that holds anything, BrokenChainError when
    the source's chain does not verify (unless ``allow_broken_chain``) and
    ValueError when the copy does not check out.
    """
    target_dir = Path(target_dir)
    if target_dir.exists() and (not target_dir.is_dir() or any(target_dir.iterdir())):
        raise ConflictError(f"{target_dir} is not empty; back up into a new or empty directory")
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = target_dir.with_name(f".{target_dir.name}.partial-{os.getpid()}")
    try:
        report = _backup_into(source, partial, secrets or {}, allow_broken_chain)
        if target_dir.exists():
            target_dir.rmdir()  # empty, checked above
        os.rename(partial, target_dir)
        json_store.fsync_dir(target_dir.parent)
    except BaseException:
        # Our own unfinished copy (private, 0700): nothing of the source's.
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return report


def _backup_into(
    source: Store, where: Path, secrets: Mapping[str, Path], allow_broken_chain: bool
) -> TransferReport:
    where.mkdir(mode=0o700)
    where.chmod(0o700)  # whatever the umask
    target = open_json(where)
    with source.snapshot() as snapshot:
        source_audit = verify_chain(store=_reading(snapshot))
        if not source_audit.ok and not allow_broken_chain:
            raise BrokenChainError(source_audit)
        report = _copy(snapshot, target, source_audit)
        for name, path in secrets.items():
            with contextlib.suppress(FileNotFoundError):
                json_store.write_new_file(where / name, path.read_bytes())
                report.secrets.append(name)
    _check(target, report)
    return report
