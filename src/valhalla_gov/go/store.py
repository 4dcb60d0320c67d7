"""PACK H persistence: step progress.

``go_progress.json`` (``{"progress": {step_id: ...}}``) in a data dir; a
generic document row on SQL.
"""

from __future__ import annotations

from typing import Any

from ..storage.errors import StorageCorruptError
from ..storage.parsing import parse_stored
from ..storage.protocol import Document, Reader, Schema, StoreTxn
from .models import StepProgress

PROGRESS = Document("go_progress", file="go_progress.json", envelope="progress")

SCHEMA = Schema(documents=(PROGRESS,))


def _parse(progress: Any) -> dict[str, StepProgress]:
    if progress is None:
        return {}
    if not isinstance(progress, dict):
        raise StorageCorruptError(PROGRESS.file, 'expected {"progress": {step_id: ...}}')
    return {
        step: parse_stored(StepProgress, value, where=PROGRESS.file, what="step progress")
        for step, value in progress.items()
    }


def read_progress(reader: Reader) -> dict[str, StepProgress]:
    """Step progress, through the store or inside a transaction."""
    return _parse(reader.read_document(PROGRESS))


def write_progress(txn: StoreTxn, progress: dict[str, StepProgress]) -> None:
    txn.write_document(PROGRESS, {k: v.model_dump() for k, v in progress.items()})
