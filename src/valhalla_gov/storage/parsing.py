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
        raise StorageCorruptError(where, f"not a valid {what}: {brief(exc)}") from exc


def brief(exc: ValidationError) -> str:
    """A validation error on one line: ``band: Input should be 'A' ... (+1 more)``.
    pydantic's own text spans lines and links to its docs, which a message
    naming a broken file does not need."""
    errors = exc.errors(include_url=False)
    if not errors:
        return " ".join(str(exc).split())
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    text = f"{where}: {first['msg']}" if where else first["msg"]
    return text + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")
