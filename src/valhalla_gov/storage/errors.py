"""Storage failures, each naming the file involved so operators can act on it."""

from __future__ import annotations

from pathlib import Path


class StorageError(Exception):
    """Base class: the service cannot use a storage file right now (HTTP 503)."""

    def __init__(self, path: Path | str, detail: str) -> None:
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{self.path}: {detail}")


class StorageCorruptError(StorageError):
    """A file exists but does not parse. Its bytes are left exactly as they are."""


class StorageUnavailableError(StorageError):
    """A file cannot be read or written (disk full, permissions, I/O error)."""


class InvalidCursorError(ValueError):
    """A pagination cursor that this backend did not hand out (HTTP 422)."""


class UnstorableValueError(ValueError):
    """A value that is not standard, bounded JSON (NaN, Infinity, nesting past
    the limit): refused before a byte is written (HTTP 422)."""
