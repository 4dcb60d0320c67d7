"""`go end` says what it ended, in words distinct from its refusal."""

from __future__ import annotations

import json
import re

import pytest

from tests.cli.conftest import Cli
from valhalla_gov.cli.render import spoken_duration

TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ?")


def test_go_end_says_what_it_ended(cli: Cli) -> None:
    session_id = json.loads(cli.local("go", "start", "--json").stdout)["id"]
    ended = cli.local("go", "end", "--notes", "done")
    assert ended.exit_code == 0, ended.output
    first = ended.stdout.splitlines()[0]
    assert re.fullmatch(
        rf"ended session {session_id} after \d+ s \(started {TIME.pattern}, band B, "
        r"health \w+\)",
        first,
    ), first
    assert "no active session" not in ended.stdout
    again = cli.local("go", "end")
    assert again.exit_code == 1
    assert again.stderr.startswith("refused: no active session")


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(37.4, "37 s"), (62, "1 min 02 s"), (3725, "1 h 02 min"), (None, "an unknown time")],
)
def test_spoken_duration(seconds: float | None, said: str) -> None:
    assert spoken_duration(seconds) == said
