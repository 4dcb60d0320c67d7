"""The benchmarks measure what they claim: one entry point, a floor that makes
the durable writes a start+end makes, a baseline shaped like the real route,
verdicts that fail only when asked. Speed itself is never asserted here."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from bench.__main__ import BENCHES
from bench.common import Guardrail
from bench.framework_app import Session

from bench import bench_writes, common
from valhalla_gov.compose import open_json
from valhalla_gov.go.session_models import GoSession

ROOT = Path(__file__).resolve().parents[2]


def test_python_m_bench_lists_every_benchmark() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for name in BENCHES:
        assert f"  {name} " in done.stdout


@pytest.mark.parametrize("name", [n for n in BENCHES if n != "guardrails"])
def test_every_listed_benchmark_has_an_entry(name: str) -> None:
    module = __import__(BENCHES[name][0], fromlist=["main"])
    assert callable(module.main)


def test_an_unknown_benchmark_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown benchmark 'nope'" in done.stderr


@contextmanager
def durable_calls() -> Iterator[dict[str, int]]:
    """Count file fsyncs, directory fsyncs and renames, whoever makes them."""
    counts = {"file fsync": 0, "dir fsync": 0, "rename": 0}
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        kind = "dir fsync" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file fsync"
        counts[kind] += 1
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        counts["rename"] += 1
        real_replace(src, dst)

    os.fsync, os.replace = fsync, replace  # type: ignore[assignment]
    try:
        yield counts
    finally:
        os.fsync, os.replace = real_fsync, real_replace


def _count(run: Callable[[], None]) -> dict[str, int]:
    with durable_calls() as counts:
        run()
    return counts


def test_the_disk_floor_makes_the_durable_calls_of_a_start_and_end(tmp_path: Path) -> None:
    store = open_json(tmp_path / "data")
    bench_writes._service_pair(store)  # creates the files: not the steady state
    real = _count(lambda: bench_writes._service_pair(store))
    floor = bench_writes.DiskFloor(
        tmp_path / "floor", bench_writes.record_json_pair(tmp_path / "trace")
    )
    floor()  # the first replay creates its files too
    replayed = _count(floor)
    assert replayed == real
    assert real["rename"] >= 2
    assert real["file fsync"] > real["rename"]


def test_the_framework_baseline_answers_the_fields_of_a_session() -> None:
    assert list(Session.model_fields) == list(GoSession.model_fields)
    assert Session().model_dump() == GoSession().model_dump()


@pytest.mark.parametrize(
    ("figure", "at_least", "verdict"),
    [(2.4, False, "PASS"), (2.6, False, "MISS"), (0.9, True, "PASS"), (0.7, True, "MISS")],
)
def test_a_guardrail_passes_on_its_side_of_the_limit(
    figure: float, at_least: bool, verdict: str
) -> None:
    limit = 2.5 if not at_least else 0.8
    assert Guardrail("g", figure, limit, at_least).verdict == verdict


def test_a_miss_fails_the_run_only_when_strict() -> None:
    miss = [Guardrail("ok", 1.0, 2.5, False), Guardrail("slow", 3.0, 2.5, False)]
    unmeasured = [Guardrail("no wrk", None, 0.8, True)]
    assert common.exit_code(miss, strict=False) == 0
    assert common.exit_code(miss, strict=True) == 1
    assert common.exit_code(unmeasured, strict=True) == 0


@pytest.mark.live
def test_the_writes_bench_runs_over_http_with_a_token(tmp_path: Path) -> None:
    # The smallest real run: servers started, a token made and sent, a table
    # and both guardrail rows printed (the filled one "not measured").
    small = ["--skip-filled", "--rounds", "1", "--iterations", "2", "--warmup", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "writes", *small],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| JSON start+end / disk floor |" in done.stdout
    assert "not measured" in done.stdout


def test_pinning_to_the_load_cpu_gives_the_cpus_back() -> None:
    before = os.sched_getaffinity(0)
    cpus = common.Cpus(server=min(before), load=max(before))
    with cpus.load_pinned():
        assert os.sched_getaffinity(0) == {max(before)}
    assert os.sched_getaffinity(0) == before


@pytest.mark.live
def test_a_terminated_benchmark_stops_its_servers_and_removes_its_scratch_dir() -> None:
    before = set(common.RESULTS_DIR.glob("writes-*"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "writes", "--skip-filled", "--rounds", "1000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # the servers are up and warm by then
        if line.startswith("# before the timed rounds"):
            break
    ours = set(common.RESULTS_DIR.glob("writes-*")) - before
    logs = [p / "serve-empty.log" for p in ours]
    proc.terminate()
    assert proc.wait(timeout=60) == 128 + 15
    assert ours
    assert not any(p.exists() for p in ours)
    # Nothing still serves from the removed dir.
    leftovers = subprocess.run(
        ["pgrep", "-f", str(next(iter(ours)))], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout == "", logs
