"""Audit-test fixtures: the JSON backend, for tests that edit audit.log's bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from valhalla_gov.compose import open_json
from valhalla_gov.storage.json_backend import JsonStore


@pytest.fixture
def jstore(tmp_path: Path) -> JsonStore:
    return open_json(tmp_path / "data")
