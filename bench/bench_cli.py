"""How long a ``valhalla`` command takes from the shell, start to exit.

Each command runs ``--runs`` times as a fresh process; the minimum is the
figure (the least disturbed run), the median shows the noise. Baselines from
the same run: the bare interpreter, and ``import fastapi`` alone (the floor
of any command that drives the app in process; ``go status`` on a data dir
reads directly and imports no FastAPI).

    .venv/bin/python -m bench.bench_cli [--runs 20] [--wait-quiet 600]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import load_text, wait_quiet

BIN = Path(sys.executable).parent


def timed(argv: list[str], runs: int) -> tuple[float, float, float]:
    """Wall-clock min and median, and the minimum CPU time (user + system) of
    the process: on a busy machine the CPU time is the steadier figure."""
    seconds, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(seconds), statistics.median(seconds), min(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--wait-quiet", type=float, default=0.0)
    args = parser.parse_args()
    noise = wait_quiet(args.wait_quiet) if args.wait_quiet else load_text()
    valhalla = str(BIN / "valhalla")
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        subprocess.run([valhalla, "init", str(data)], check=True, capture_output=True)
        cases = {
            "python -c pass (baseline)": [sys.executable, "-c", "pass"],
            "python -c 'import fastapi' (baseline)": [sys.executable, "-c", "import fastapi"],
            "valhalla --version": [valhalla, "--version"],
            "valhalla --help": [valhalla, "--help"],
            "valhalla go --help": [valhalla, "go", "--help"],
            "valhalla go status (local, direct read)": [
                valhalla,
                "go",
                "status",
                "--data-dir",
                str(data),
            ],
        }
        print(f"# {noise}; {args.runs} runs each; seconds")
        print("| command | wall min | wall median | CPU min |")
        print("|---|---|---|---|")
        for name, argv in cases.items():
            best, median, cpu = timed(argv, args.runs)
            print(f"| `{name}` | {best:.3f} | {median:.3f} | {cpu:.3f} |")


if __name__ == "__main__":
    main()
