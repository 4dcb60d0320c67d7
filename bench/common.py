"""Helpers shared by the benchmark scripts: machine noise, reported and reduced."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def load_text() -> str:
    """The load average: other processes on the machine skew absolute figures."""
    one, five, fifteen = os.getloadavg()
    return f"load average (1, 5, 15 min): {one:.2f} {five:.2f} {fifteen:.2f}; {pressure_text()}"


def pressure(resource: str) -> float | None:
    """Linux PSI: share of the last 10 s in which some task waited for
    ``resource`` ("cpu" or "io"), in percent; None where PSI is missing."""
    try:
        text = Path(f"/proc/pressure/{resource}").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            return float(line.split("avg10=")[1].split()[0])
    return None


def pressure_text() -> str:
    cpu, io = pressure("cpu"), pressure("io")
    if cpu is None or io is None:
        return "pressure unknown (no /proc/pressure)"
    return f"CPU pressure {cpu:.0f}%, I/O pressure {io:.0f}%"


def wait_quiet(max_wait: float, threshold: float = 10.0) -> str:
    """Wait (at most ``max_wait`` s) until other work leaves CPU and disk mostly idle.

    Call it while this benchmark is idle, so its own load does not count.
    """
    deadline = time.monotonic() + max_wait
    while True:
        cpu, io = pressure("cpu"), pressure("io")
        if cpu is None or io is None:
            return pressure_text()
        if cpu <= threshold and io <= threshold:
            return f"{pressure_text()} (quiet)"
        if time.monotonic() >= deadline:
            return f"{pressure_text()}: the machine is busy, absolute figures are noisy"
        time.sleep(5)


def source_state() -> str:
    """Which code was measured: the commit, and whether src/ had edits on top."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "source state unknown (no git)"
    if dirty:
        return f"commit {head} + {len(dirty)} uncommitted paths under src/"
    return f"commit {head}, src/ clean"


def filesystem_of(path: Path) -> str:
    """``ext4 on /dev/vda`` for the mount holding ``path`` (from /proc/mounts)."""
    target = str(path.resolve())
    best = ("", "?", "?")
    try:
        lines = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown file system"
    for line in lines:
        device, mount, fstype = line.split()[:3]
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best[0]):
            best = (mount, fstype, device)
    return f"{best[1]} on {best[2]} (mounted at {best[0]})"


def machine_text(data_root: Path) -> str:
    """CPU count and model, Python, and what fsync reaches for ``data_root``."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()},"
        f" data dirs on {filesystem_of(data_root)}"
    )


def begin_run(results_dir: Path, postgres: dict[str, str] | None) -> dict[str, Any]:
    """Print and return what a results file records about where it was measured."""
    results_dir.mkdir(parents=True, exist_ok=True)
    header: dict[str, Any] = {
        "source": source_state(),
        "machine": machine_text(results_dir),
        "postgres": postgres,
    }
    print(f"measuring {header['source']}\n{header['machine']}")
    if postgres is not None:
        print(f"PostgreSQL: {postgres}")
    print(f"at the start: {load_text()}")
    return header


def save_run(
    results_dir: Path, name: str, args: Any, header: dict[str, Any], body: dict[str, Any]
) -> Path:
    """Write one run's raw figures as ``<name>-<UTC stamp>.json`` and say where."""
    end = load_text()
    print(f"\nat the end: {end}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = results_dir / f"{name}-{stamp}.json"
    record = {"args": vars(args), **header, "machine_at_end": end, **body}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nraw figures: {out}")
    return out
