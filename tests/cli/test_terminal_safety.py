"""Stored text never reaches the terminal as a control sequence, in any
command or output format; JSON output stays valid and carries the same value."""

from __future__ import annotations

import io
import json
import re

import pytest

from tests.cli.conftest import Cli, Seeder
from tests.conftest import FakeClock, health_now
from valhalla_gov.cli.terminal import SafeTextStream, safe_json
from valhalla_gov.compose import open_json
from valhalla_gov.cone.service import set_cone_state
from valhalla_gov.go.playbook import load_playbook
from valhalla_gov.go.service import complete_step

HOSTILE = (
    "before\x1b[2J\x1b]0;pwned\x07\r\x1b[1Aaudit chain OK\x9b2J\u202eevil\u2066x\x08\x7f"
    "\nsecond line"
)
# What must never appear in output (newline and tab are fine).
DANGEROUS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

COMMANDS = [
    ("go", "status"),
    ("go", "status", "--json"),
    ("go", "history"),
    ("go", "history", "--json"),
    ("go", "checklist"),
    ("go", "checklist", "--json"),
    ("cone", "show"),
    ("cone", "show", "--json"),
    ("audit", "tail"),
    ("audit", "tail", "--json"),
    ("sessions", "export", "--format", "csv"),
    ("sessions", "export", "--format", "json"),
]


@pytest.fixture
def hostile(cli: Cli, seeder: Seeder, clock: FakeClock) -> Cli:
    seeder.session(minutes=5, start_notes=HOSTILE, end_notes=HOSTILE)
    store = open_json(cli.data_dir)
    set_cone_state(
        store=store, band="C", reason=HOSTILE, metrics={HOSTILE: HOSTILE}, actor="x", clock=clock
    )
    complete_step(
        store=store,
        health=health_now(store),
        playbook=load_playbook(None),
        step_id="preflight_view_dashboard",
        done=True,
        notes=HOSTILE,
        actor="x",
        clock=clock,
    )
    return cli


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_no_control_character_reaches_the_output(hostile: Cli, args: tuple[str, ...]) -> None:
    result = hostile.local(*args)
    assert result.exit_code == 0, result.output
    assert "pwned" in result.output or "audit" in args or "checklist" in args
    found = DANGEROUS.findall(result.output)
    assert found == [], found
    if "--json" in args or "json" in args:
        assert HOSTILE in _strings(json.loads(result.output))


def _strings(value: object) -> set[str]:
    """Every string (keys too) in a parsed JSON value."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(k) | _strings(v) for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value))
    return set()


def test_a_note_cannot_print_a_line_of_its_own(hostile: Cli) -> None:
    output = hostile.local("go", "status").output
    assert "\nsecond line" not in output
    assert "\n       second line" in output


def test_json_escaping_keeps_the_value() -> None:
    text = json.dumps({"n": HOSTILE}, ensure_ascii=False)
    assert json.loads(safe_json(text)) == {"n": HOSTILE}
    assert DANGEROUS.findall(safe_json(text)) == []


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_only_colour_sequences_pass() -> None:
    tty = _Tty()
    stream = SafeTextStream(tty)
    stream.write("\x1b[31mred\x1b[0m \x1b[1;33mbold\x1b[0m \x1b[8mhidden \x1b[2J \x1b]0;t\x07")
    out = tty.getvalue()
    assert "\x1b[31mred\x1b[0m" in out
    assert "\x1b[1;33mbold" in out
    assert "\\u001b[8m" in out  # conceal is not a colour
    assert "\\u001b[2J" in out
    assert "\\u001b]0;t\\u0007" in out


def test_off_a_terminal_nothing_passes() -> None:
    plain = io.StringIO()
    SafeTextStream(plain).write("\x1b[31mred\x1b[0m")
    assert plain.getvalue() == "\\u001b[31mred\\u001b[0m"


def test_a_line_ending_cr_lf_is_kept_a_lone_cr_is_not() -> None:
    plain = io.StringIO()
    SafeTextStream(plain).write("a,b\r\nfake\roverwrite\n")
    assert plain.getvalue() == "a,b\r\nfake\\u000doverwrite\n"
