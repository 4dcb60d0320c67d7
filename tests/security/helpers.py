"""Shared pieces for the security tests."""

from __future__ import annotations

import hashlib
from pathlib import Path


def data_dir_digest(data_dir: Path) -> dict[str, str]:
    """Every file's bytes (as a digest) except the lock: what 'nothing saved' means."""
    return {
        str(path.relative_to(data_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file() and path.name != ".valhalla.lock"
    }
