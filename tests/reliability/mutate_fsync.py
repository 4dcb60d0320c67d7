"""Mutation check: remove each fsync of ``json_store.py`` in turn; a test must fail.

    make mutate-fsync                      # or: .venv/bin/python -m tests.reliability.mutate_fsync

For every ``fs.fsync(...)`` and ``fsync_dir(...)`` call in
``src/valhalla_gov/storage/json_store.py`` (the directory fsync inside
``fsync_dir`` itself included), a copy of ``src/`` is made in a temporary
directory with that one call replaced by ``pass``, and the power-loss test
runs against the copy (``PYTHONPATH`` puts it first; the script checks the
copy is what gets imported). The unmutated copy must pass first. Prints one
line per call and the count; exits 1 when a removed fsync leaves the test
green. The working tree is never touched.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE = Path("valhalla_gov") / "storage" / "json_store.py"
TESTS = ["tests/reliability/test_power_loss.py"]


@dataclass(frozen=True)
class Site:
    function: str
    line: int
    end_line: int
    text: str


def _is_fsync(call: ast.expr) -> bool:
    if not isinstance(call, ast.Call):
        return False
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == "fsync_dir"
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "fsync"
        and isinstance(func.value, ast.Name)
        and func.value.id == "fs"
    )


def find_sites(source: str) -> list[Site]:
    """Every statement that is a call to ``fs.fsync`` or ``fsync_dir``, outside
    the ``FileOps`` seam itself (which the test replaces)."""
    lines = source.splitlines()
    sites: list[Site] = []
    for top in ast.parse(source).body:
        if not isinstance(top, ast.FunctionDef):
            continue
        for node in ast.walk(top):
            if isinstance(node, ast.Expr) and _is_fsync(node.value):
                end = node.end_lineno or node.lineno
                sites.append(Site(top.name, node.lineno, end, lines[node.lineno - 1].strip()))
    return sorted(sites, key=lambda site: site.line)


def mutate(source: str, site: Site) -> str:
    lines = source.splitlines(keepends=True)
    first = lines[site.line - 1]
    indent = first[: len(first) - len(first.lstrip())]
    return "".join(
        [*lines[: site.line - 1], f"{indent}pass  # mutant: {site.text}\n", *lines[site.end_line :]]
    )


def run_tests(src: Path, basetemp: Path, tests: list[str]) -> tuple[bool, str]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    where = subprocess.run(
        [sys.executable, "-c", "import valhalla_gov.storage.json_store as m; print(m.__file__)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if Path(where) != src / MODULE:
        raise SystemExit(f"the copy is not what gets imported: {where}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={basetemp}",
            *tests,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    # The assertion's first lines: where the power cut was and what broke.
    failed = [line[1:].strip() for line in output.splitlines() if line.startswith("E ")][:3]
    return result.returncode == 0, (" | ".join(failed) or output.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tests", nargs="*", default=TESTS, help="pytest targets to run")
    args = parser.parse_args()
    original = (ROOT / "src" / MODULE).read_text()
    sites = find_sites(original)
    with tempfile.TemporaryDirectory(prefix="valhalla-mutants-") as scratch:
        src = Path(scratch) / "src"
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
        started = time.monotonic()
        passed, detail = run_tests(src, Path(scratch) / "base", args.tests)
        if not passed:
            print(f"the unmutated code fails the tests: {detail}")
            return 2
        print(f"unmutated: pass ({time.monotonic() - started:.0f} s)")
        killed = 0
        for n, site in enumerate(sites, start=1):
            (src / MODULE).write_text(mutate(original, site))
            started = time.monotonic()
            passed, detail = run_tests(src, Path(scratch) / f"m{n}", args.tests)
            killed += not passed
            verdict = "SURVIVED (the tests stay green)" if passed else "caught"
            print(
                f"{n:2}. {site.function}:{site.line} `{site.text}`: {verdict} "
                f"({time.monotonic() - started:.0f} s)"
            )
            if not passed:
                print(f"      {detail[:500]}")
        print(f"{len(sites)} fsync calls removed one at a time: a test failed for {killed}")
    return 0 if killed == len(sites) else 1


if __name__ == "__main__":
    sys.exit(main())
