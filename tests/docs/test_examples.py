"""Every shell example in README.md and docs/ runs, in order, against a real
``valhalla serve`` started here, as a reader would type it.

A ```` ```sh ```` block runs line by line; a ```` ```console ```` block runs
its ``$ `` lines, and where it shows ``$ echo $?`` the exit code must be that
one. A shown ``refused:`` / ``error:`` message must be the one printed (ids,
times and numbers aside). Blocks fenced ```` ```sh norun ```` are synopses or
need what a test cannot have (``make run`` serving forever, a remote
database, a public URL); they say so in their info string.

The operator pages (docs/deploy.md, docs/operations.md) run as written on
the server too: their paths are mapped to the test's (the data dir, a
backups dir), ``sudo systemctl stop|start|restart valhalla`` stops and starts
the live server, ``sudo`` (``-u valhalla``) runs the command as the test's
user, and their PostgreSQL URLs (``@db.internal/``) are scratch databases.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import need, pg_available, pg_schema
from tests.live.server import VALHALLA, LiveServer

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)(.*)$")
ULID = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b")
ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ][\d:.]+Z?")
SERVICE = re.compile(r"^sudo systemctl (stop|start|restart) valhalla$")
SUDO = re.compile(r"^sudo (-u valhalla )?")
PG_URL = re.compile(r"postgresql\+psycopg://[^\s/]+@db\.internal/\w+")


@dataclass
class Step:
    command: str
    where: str
    code: int | None = None  # from a following `$ echo $?`
    said: str | None = None  # a shown refused:/error: line


@dataclass
class Block:
    lang: str
    where: str
    lines: list[str] = field(default_factory=list)


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    current: Block | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(line)
        if match and current is None:
            lang, info = match.group(1), match.group(2)
            if lang in ("sh", "console") and "norun" not in info:
                current = Block(lang, f"{path.name}:{number}")
            elif lang:
                current = Block("skip", "")
            else:
                current = Block("skip", "")
            continue
        if match and current is not None and not match.group(1):
            if current.lang != "skip":
                found.append(current)
            current = None
            continue
        if current is not None:
            current.lines.append(line)
    return found


def _strip_comment(line: str) -> str:
    # A comment is two spaces and a '#' outside quotes (as the docs write them).
    out, quote = [], ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and line[max(0, i - 2) : i] == "  ":
            break
        out.append(ch)
    return "".join(out).rstrip()


def steps(block: Block) -> list[Step]:
    result: list[Step] = []
    if block.lang == "sh":
        pending = ""
        for raw in block.lines:
            line = _strip_comment(raw)
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            command = (pending + line).strip()
            pending = ""
            if command and not command.startswith("#"):
                result.append(Step(command, block.where))
        return result
    for raw in block.lines:
        if raw.startswith("$ "):
            command = raw[2:].strip()
            if command == "echo $?" and result:
                continue
            result.append(Step(command, block.where))
        elif result and raw.strip():
            last = result[-1]
            if raw.strip().isdigit() and last.code is None and _after_echo(block, raw):
                last.code = int(raw.strip())
            elif last.said is None and raw.startswith(("refused:", "error:")):
                last.said = raw
    return result


def _after_echo(block: Block, value_line: str) -> bool:
    lines = block.lines
    index = lines.index(value_line)
    return index > 0 and lines[index - 1].strip() == "$ echo $?"


def normal(text: str) -> str:
    text = ULID.sub("ID", text)
    text = ISO.sub("TIME", text)
    return re.sub(r"\d+", "N", text).strip()


class Reader:
    """Runs the steps as a reader on the server's machine would."""

    def __init__(
        self, server: LiveServer, home: Path, databases: dict[str, str] | None = None
    ) -> None:
        self.server = server
        self.home = home
        self.databases = databases or {}  # a docs URL -> a scratch database
        self.port = server.url.rsplit(":", 1)[1]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
        self.env.update(
            {
                "PATH": f"{Path(VALHALLA).parent}:{os.environ['PATH']}",
                "VALHALLA_DATA_DIR": str(server.data_dir),
                "COLUMNS": "200",
            }
        )
        self.token: str | None = None

    def substitute(self, command: str) -> str:
        command = command.replace("localhost:8000", f"127.0.0.1:{self.port}")
        command = command.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}")
        command = command.replace("https://valhalla.example.com", self.server.url)
        command = command.replace("/srv/valhalla", str(self.server.data_dir))
        command = command.replace("/var/lib/valhalla/data", str(self.server.data_dir))
        command = command.replace("/var/backups/valhalla", str(self.home / "backups"))
        return PG_URL.sub(lambda m: self.databases[m.group(0)], command)

    def _shell(self, command: str) -> str:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    def run(self, step: Step) -> None:
        service = SERVICE.match(step.command)
        if service is not None:
            # The systemd unit is the live server here.
            if service.group(1) in ("stop", "restart"):
                self.server.stop()
            if service.group(1) in ("start", "restart"):
                self.server.start()
            return
        command = self.substitute(SUDO.sub("", step.command))
        if command.startswith("export "):
            name, _, value = command[len("export ") :].partition("=")
            if "$(" in value:  # e.g. $(cat data/owner.token): as the shell would
                value = self._shell(f"printf %s {value}")
            else:
                value = shlex.split(value)[0] if value else ""
            if value.startswith("vgo_") and value.endswith("..."):
                value = self.token or ""
            self.env[name] = value
            return
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = done.stdout + done.stderr
        where = f"{step.where}: {step.command}"
        assert "Traceback" not in output, f"{where}\n{output}"
        assert done.returncode == (step.code or 0), f"{where}: exit {done.returncode}\n{output}"
        if step.said is not None:
            shown = normal(step.said)
            # A line the docs cut short ("...") matches by its start.
            cut = shown.endswith("...")
            prefix = shown.removesuffix("...").rstrip()
            assert any(
                normal(line).startswith(prefix) if cut else normal(line) == shown
                for line in output.splitlines()
            ), f"{where}: the docs show\n{step.said}\nbut it printed\n{output}"
        # A token printed here (token create) is the one later examples use.
        last = done.stdout.strip().splitlines()[-1:] if done.stdout.strip() else []
        if last and last[0].startswith("vgo_"):
            self.token = last[0]
            self.env["VALHALLA_TOKEN"] = self.token


def _runnable(doc: Path) -> bool:
    return any(steps(block) for block in blocks(doc))


def test_the_getting_started_docs_have_runnable_examples() -> None:
    # Docs without shell examples are left out below rather than skipped.
    assert _runnable(ROOT / "README.md")
    assert _runnable(ROOT / "docs" / "getting-started.md")
    assert _runnable(ROOT / "docs" / "api.md")
    assert _runnable(ROOT / "docs" / "cli.md")
    assert _runnable(ROOT / "docs" / "deploy.md")
    assert _runnable(ROOT / "docs" / "operations.md")


@pytest.mark.parametrize("doc", [d for d in DOCS if _runnable(d)], ids=lambda p: p.name)
def test_every_example_runs(doc: Path, tmp_path: Path) -> None:
    todo = [step for block in blocks(doc) for step in steps(block)]
    home = tmp_path / "home"
    (home / "backups").mkdir(parents=True)
    urls = sorted({m.group(0) for step in todo for m in PG_URL.finditer(step.command)})
    if urls:
        need(pg_available(), f"{doc.name} runs against PostgreSQL on 127.0.0.1:5432")
    with contextlib.ExitStack() as stack, LiveServer(tmp_path / "data") as server:
        databases = {url: stack.enter_context(pg_schema()) for url in urls}
        # The reader's ./data is the server's, as after `make run` in the checkout.
        (home / "data").symlink_to(server.data_dir)
        reader = Reader(server, home, databases)
        for step in todo:
            reader.run(step)
