"""Fault-injection helpers for the tmpfs-based tests."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.conftest import need
from valhalla_gov.storage.protocol import BulkRun


def fill_up(directory: Path) -> Path:
    """Write a filler file until the file system reports ENOSPC; return it."""
    filler = directory / "filler.bin"
    block = b"\0" * 4096
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while True:
            os.write(fd, block)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return filler


def remount_read_only(mount_point: Path) -> None:
    result = subprocess.run(
        ["mount", "-o", "remount,ro", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    need(result.returncode == 0, f"cannot remount the tmpfs read-only: {result.stderr.strip()}")


def bulk_pairs(runs: Iterable[BulkRun]) -> list[tuple[bytes | str, dict[str, Any]]]:
    """A bulk scan's runs as (text, record) pairs, in order."""
    return [pair for texts, records in runs for pair in zip(texts, records, strict=True)]
