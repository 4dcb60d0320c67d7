"""Persistence: the store protocol and its backends."""

from .errors import StorageCorruptError, StorageError, StorageUnavailableError
from .json_backend import JsonStore
from .protocol import LogEntry, Store, StoreTxn

__all__ = [
    "JsonStore",
    "LogEntry",
    "StorageCorruptError",
    "StorageError",
    "StorageUnavailableError",
    "Store",
    "StoreTxn",
]
