"""Fixtures for the reliability tests: the figures file, a small tmpfs, a seed."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import mounted_tmpfs

Record = Callable[[str, dict[str, Any]], Path]

# Seconds a reliability test may run before pytest-timeout fails it (with
# every thread's stack): a hang is a failure with a message, never a stuck run.
# A test that needs longer says so with its own ``@pytest.mark.timeout``.
RELIABILITY_TIMEOUT_S = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in item.nodeid and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(RELIABILITY_TIMEOUT_S))


@pytest.fixture(scope="session")
def figures_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "reliability-figures.json"


@pytest.fixture
def record_figures(figures_path: Path) -> Record:
    """Merge one test's figures into ``reliability-figures.json`` under the
    pytest tmp dir and print them (``pytest -s`` shows them)."""

    def record(name: str, figures: dict[str, Any]) -> Path:
        existing: dict[str, Any] = {}
        if figures_path.exists():
            existing = json.loads(figures_path.read_text())
        existing[name] = figures
        figures_path.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
        print(f"\n[{name}] {json.dumps(figures, sort_keys=True)}")
        print(f"figures written to {figures_path}")
        return figures_path

    return record


def seed_for(name: str) -> int:
    """A fresh seed per run (printed, so a failure can be replayed), or the one
    given in ``VALHALLA_TEST_SEED``."""
    given = os.environ.get("VALHALLA_TEST_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"\n[{name}] seed {seed} (replay with VALHALLA_TEST_SEED={seed})")
    return seed


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs inside tmp_path (skips where it cannot mount)."""
    with mounted_tmpfs(tmp_path / "small", "1m") as mount_point:
        yield mount_point
