"""The worker factory `valhalla serve` runs (``app.app_from_env``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_FACTORY = """
import gc
from valhalla_gov.app import app_from_env
app = app_from_env()
frozen, tracked = gc.get_freeze_count(), len(gc.get_objects())
cycle = []
cycle.append(cycle)
del cycle
print(frozen, tracked, gc.collect())
"""


def test_a_served_app_keeps_its_start_up_out_of_full_collections(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    env["VALHALLA_DATA_DIR"] = str(tmp_path / "data")
    run = subprocess.run(
        [sys.executable, "-c", _FACTORY],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    frozen, tracked, collected = map(int, run.stdout.split())
    # What start-up built is frozen: a full collection walks almost nothing.
    assert frozen > 50_000
    assert tracked * 20 < frozen
    # Garbage made afterwards is still collected.
    assert collected >= 1
