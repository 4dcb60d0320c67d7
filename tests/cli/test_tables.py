"""Tables fit 80 and 120 columns without cutting what one reads whole or
types back (step ids, session ids, times, URLs); --wide and --json for
scripts."""

from __future__ import annotations

import json
import re

import pytest

from tests.cli.conftest import Cli, Seeder
from valhalla_gov.cli.render import Column, Table
from valhalla_gov.go.playbook import load_playbook

PLAYBOOK = load_playbook(None)
WIDTHS = [80, 120]
HOOK_URL = "https://hooks.example.com/T000/B000/XXXX"  # 40 characters
TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ?")


def _at(cli: Cli, width: int, *args: str) -> str:
    result = cli.run(*args, "--data-dir", str(cli.data_dir), env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    return result.stdout


def _fits(text: str, width: int) -> None:
    longest = max(len(line) for line in text.splitlines())
    assert longest <= width, text


@pytest.mark.parametrize("width", WIDTHS)
def test_checklist_shows_every_whole_step_id(cli: Cli, width: int) -> None:
    out = _at(cli, width, "go", "checklist")
    _fits(out, width)
    words = out.split()
    for step in PLAYBOOK.steps:
        assert step.id in words  # whole, on one line, not cut with an ellipsis
    assert "…" not in out


@pytest.mark.parametrize("width", WIDTHS)
def test_history_shows_day_time_and_id(cli: Cli, seeder: Seeder, width: int) -> None:
    ids = [
        seeder.session(minutes=m, end_notes="a note long enough to need wrapping " * 3).id
        for m in (5, 65)
    ]
    out = _at(cli, width, "go", "history")
    _fits(out, width)
    for session_id in ids:
        assert session_id in out.split()
    sessions = json.loads(_at(cli, width, "go", "history", "--json"))
    for session in sessions:
        started = session["started_at_utc"]
        shown = f"{started[:10]} {started[11:19]}"
        assert shown in out
    assert len(TIME.findall(out)) == len(ids)


@pytest.mark.parametrize("width", WIDTHS)
def test_webhook_list_shows_whole_urls(cli: Cli, width: int) -> None:
    added = cli.local("webhook", "add", HOOK_URL, "--name", "chat", "--events", "all")
    assert added.exit_code == 0, added.output
    out = _at(cli, width, "webhook", "list")
    _fits(out, width)
    assert HOOK_URL in out.split()
    assert json.loads(_at(cli, width, "webhook", "list", "--json"))[0]["url"] == HOOK_URL


@pytest.mark.parametrize("width", WIDTHS)
def test_audit_tail_wraps_between_words(cli: Cli, width: int) -> None:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    started = cli.local("go", "start", "--notes", " ".join(words), "--json")
    session_id = json.loads(started.stdout)["id"]
    out = _at(cli, width, "audit", "tail")
    _fits(out, width)
    shown = re.findall(r"[a-z]+", out)
    for word in words:
        assert word in shown  # never cut across two lines
    assert session_id in out  # an id in the payload stays whole too


def test_wide_is_one_line_a_row_and_json_is_the_api(cli: Cli) -> None:
    out = _at(cli, 80, "go", "checklist", "--wide")
    lines = out.splitlines()
    assert len(lines) == 3 + len(PLAYBOOK.steps)  # title, header, rule, a line a step
    assert any(len(line) > 80 for line in lines)  # not fitted: nothing wraps
    data = json.loads(_at(cli, 80, "go", "checklist", "--json"))
    assert [s["id"] for s in data["steps"]] == [s.id for s in PLAYBOOK.steps]
    for args in (["go", "history"], ["audit", "tail"], ["token", "list"], ["webhook", "list"]):
        assert _at(cli, 80, *args, "--wide")
        json.loads(_at(cli, 80, *args, "--json"))


def test_a_table_wraps_only_the_columns_that_may() -> None:
    grid = Table("id", Column("notes", wrap=True, floor=5), Column("extra", optional=True))
    grid.add_row("x" * 30, "word " * 20, "more")
    lines = grid.lines(40)
    assert all(len(line) <= 40 for line in lines)
    assert all("extra" not in line for line in lines)  # left out to fit
    assert sum("x" * 30 in line for line in lines) == 1
    assert len(grid.lines(40, wide=True)) == 3
