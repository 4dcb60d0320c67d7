"""PACK H persistence: step progress in ``go_progress.json``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..storage.errors import StorageCorruptError
from ..storage.protocol import DOC_GO_PROGRESS, Store, StoreTxn
from .models import StepProgress


def _parse(raw: Any) -> dict[str, StepProgress]:
    if raw is None:
        return {}
    progress = raw.get("progress") if isinstance(raw, dict) else None
    if not isinstance(progress, dict):
        raise StorageCorruptError("go_progress.json", 'expected {"progress": {step_id: ...}}')
    try:
        return {k: StepProgress.model_validate(v) for k, v in progress.items()}
    except ValidationError as exc:
        raise StorageCorruptError("go_progress.json", f"invalid step progress: {exc}") from exc


def load_progress(*, store: Store) -> dict[str, StepProgress]:
    return _parse(store.read_document(DOC_GO_PROGRESS))


def read_progress(txn: StoreTxn) -> dict[str, StepProgress]:
    return _parse(txn.read_document(DOC_GO_PROGRESS))


def write_progress(txn: StoreTxn, progress: dict[str, StepProgress]) -> None:
    txn.write_document(
        DOC_GO_PROGRESS, {"progress": {k: v.model_dump() for k, v in progress.items()}}
    )
