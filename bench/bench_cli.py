"""Wall time of every local ``valhalla`` command the README shows, start to exit.

Runs against a prepared data dir (a copy of ``bench.fill``'s dir with
``--entries`` sessions and audit lines, plus a token and a webhook), with the
settings a deployment keeps in its environment (``VALHALLA_DATA_DIR``,
``VALHALLA_LOG_LEVEL=warning``), so no command names ``--data-dir``. Each
round runs the whole list once, in an order that keeps the state sensible
(start before complete before end); every command runs ``--runs`` times and
its best run counts. ``python -c pass`` runs in the same rounds: the floor of
any Python command on this machine at this moment.

    python -m bench cli                    # 5 runs, 1,000 entries, budget 0.15 s
    python -m bench cli --runs 11 --strict # exit 1 if a command is over budget
    python -m bench cli --remote           # also the reads with --url, against a
                                           # `valhalla serve` on the same data dir
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common

STEP = "preflight_view_dashboard"
FLOOR = "python -c pass"


def commands(valhalla: str) -> dict[str, list[str]]:
    """Every local command of the README, in the order one round runs them."""
    return {
        FLOOR: [sys.executable, "-c", "pass"],
        "valhalla --help": [valhalla, "--help"],
        "valhalla go status": [valhalla, "go", "status"],
        "valhalla go start": [valhalla, "go", "start", "--notes", "bench"],
        "valhalla go checklist": [valhalla, "go", "checklist"],
        "valhalla go next": [valhalla, "go", "next"],
        "valhalla go complete STEP": [valhalla, "go", "complete", STEP, "--notes", "bench"],
        "valhalla go end": [valhalla, "go", "end", "--notes", "bench"],
        "valhalla go history": [valhalla, "go", "history"],
        "valhalla cone show": [valhalla, "cone", "show"],
        "valhalla cone set B": [valhalla, "cone", "set", "B", "--reason", "bench"],
        "valhalla audit tail": [valhalla, "audit", "tail"],
        "valhalla audit verify": [valhalla, "audit", "verify"],
        "valhalla token list": [valhalla, "token", "list"],
        "valhalla sessions report": [valhalla, "sessions", "report"],
        "valhalla webhook list": [valhalla, "webhook", "list"],
    }


def remote_commands(valhalla: str, url: str) -> dict[str, list[str]]:
    """Commands a phone or a script sends to a server: the same, with --url
    (the owner credential of the data dir is found as on the server's machine)."""
    return {
        f"valhalla {' '.join(args)} --url": [valhalla, *args, "--url", url]
        for args in (
            ["go", "status"],
            ["go", "checklist"],
            ["go", "history"],
            ["audit", "tail"],
            ["token", "list"],
        )
    }


def prepare(work: Path, entries: int, env: dict[str, str]) -> Path:
    from bench.fill import ensure_filled

    data = work / "data"
    shutil.copytree(ensure_filled(entries), data)
    for argv in (
        [common.VALHALLA, "token", "create", "--name", "phone", "--scopes", "operator"],
        [common.VALHALLA, "webhook", "add", "http://127.0.0.1:9/hook", "--name", "ops"],
    ):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv[1:])} failed: {done.stdout}{done.stderr}")
    return data


def _rounds(cases: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, list[float]]:
    """Each command's times, one per round; the first round (which writes
    the bytecode caches) left out."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs + 1):
        for name, command in cases.items():
            began = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, check=False)
            times[name].append(time.perf_counter() - began)
            if done.returncode != 0:
                raise SystemExit(f"{name} exited {done.returncode}: {done.stderr!r}")
    return {name: values[1:] for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench cli", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each command; the best counts")
    parser.add_argument("--entries", type=int, default=1_000, help="sessions in the data dir")
    parser.add_argument("--budget", type=float, default=0.15, help="seconds a command may take")
    parser.add_argument(
        "--remote",
        action="store_true",
        help="also time the reads with --url against `valhalla serve` on the data dir",
    )
    common.add_common(parser)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.entries < 1:
        parser.error("--runs and --entries must be >= 1")
    info = common.header("cli")
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cli-", dir=common.RESULTS_DIR))
    try:
        env = common.deployment_env(VALHALLA_DATA_DIR=str(work / "data"))
        data = prepare(work, args.entries, env)
        cases = commands(common.VALHALLA)
        with contextlib.ExitStack() as stack:
            if args.remote:
                port = common.free_port()
                argv = common.valhalla_serve(port, data)
                stack.enter_context(common.serving(argv, env, port, work / "serve.log"))
                cases.update(remote_commands(common.VALHALLA, f"http://{common.HOST}:{port}"))
            print(f"# {common.wait_quiet(args.wait_quiet)}")
            times = _rounds(cases, env, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    floor = min(times[FLOOR])
    print(f"\n{args.entries:,} sessions in the data dir; best of {args.runs}, seconds\n")
    print(f"| command | best s | x `{FLOOR}` | median s | <= {args.budget:g} s |")
    print("|---|---:|---:|---:|---|")
    over = []
    for name, values in times.items():
        best = min(values)
        within = "yes" if best <= args.budget else "**no**"
        if best > args.budget:
            over.append(name)
        median = statistics.median(values)
        print(f"| `{name}` | {best:.3f} | {best / floor:.1f} | {median:.3f} | {within} |")
    print(f"\n{len(over)} of {len(times)} commands over {args.budget:g} s")
    common.save("cli", {**info, "args": vars(args)}, {"seconds": times, "over_budget": over})
    return 1 if args.strict and over else 0
