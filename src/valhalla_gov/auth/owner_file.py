"""The owner credential's file: ``owner.token`` in the data dir, 0600.

It holds the owner credential itself (the store keeps only its SHA-256, with
the tokens). Only the account that owns the data dir may read it: that
account is the owner, whatever address its clients come from.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..storage import json_store
from ..storage.errors import StorageUnavailableError

OWNER_FILE = "owner.token"


def owner_file(data_dir: Path) -> Path:
    return Path(data_dir) / OWNER_FILE


def _text(token: str) -> bytes:
    return f"{token}\n".encode("ascii")


def _parse(path: Path, raw: bytes) -> str:
    token = raw.decode("ascii", errors="replace").strip()
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise StorageUnavailableError(
            path, "does not hold a credential; `valhalla token rotate-owner` writes a new one"
        )
    return token


def read_owner_token(data_dir: Path) -> str | None:
    """The credential in the data dir (None when there is none), as the
    server reads it: the file must be this account's and private."""
    path = owner_file(data_dir)
    found = json_store.read_private(path)
    if found is None:
        return None
    raw, st = found
    if st.st_uid != os.geteuid():
        raise StorageUnavailableError(
            path,
            f"belongs to uid {st.st_uid}, not to the server's uid {os.geteuid()}; move it aside",
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise StorageUnavailableError(
            path, f"is readable by other users; fix it with: chmod 600 {path}"
        )
    return _parse(path, raw)


def read_owner_token_as_client(data_dir: Path) -> tuple[str, int] | None:
    """The credential and the uid that owns its file, for a command that
    talks to a server; None when it is missing or not readable here."""
    path = owner_file(data_dir)
    try:
        found = json_store.read_private(path)
    except StorageUnavailableError:
        return None  # not ours to read (permission), or not a file
    if found is None:
        return None
    raw, st = found
    try:
        return _parse(path, raw), st.st_uid
    except StorageUnavailableError:
        return None


def create_owner_token(data_dir: Path, token: str) -> bool:
    """Write the credential if the data dir has none (``O_EXCL``: of two
    processes exactly one writes it); False when a file was there already."""
    return json_store.create_exclusive(owner_file(data_dir), _text(token))


def replace_owner_token(data_dir: Path, token: str) -> None:
    """Write a new credential in place of the old one, atomically."""
    json_store.write_bytes_atomic(owner_file(data_dir), _text(token))
