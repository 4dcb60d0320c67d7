"""Reading a stored value as a model: what does not fit is corrupt data
(HTTP 503 naming the file), never a crash and never a silent default."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import StorageCorruptError

M = TypeVar("M", bound=BaseModel)


def parse_stored(model: type[M], value: Any, *, where: str, what: str) -> M:
    """``model`` validated from ``value``, or StorageCorruptError naming
    ``where`` (the file or row) and ``what`` it should have been."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise StorageCorruptError(where, f"not a valid {what}: {exc}") from exc
