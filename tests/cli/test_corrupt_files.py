"""Every CLI command against every corrupt data file: a clean message naming
the file, exit 0 or 1, never a traceback, and the bytes left as they were."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.cli.test_first_hour import DATA_DIR_COMMANDS

# What a half-written or hand-edited file looks like.
CORRUPT: dict[str, bytes] = {
    "go_session.json": b'{"session": {"active": "very"',
    "cone_state.json": b'{"band": "Z"}',
    "go_progress.json": b"[1, 2",
    "tokens.json": b'{"tokens": "all of them"}',
    "thresholds.json": b'{"deny_rate_red": "high"}',
    "audit.log": b'{"ts_utc": "2026-01-01T00:00:00Z", "event": "X"}\nnot json\n',
    "go_session_history.jsonl": b'{"id": \n',
    "cone_decisions.jsonl": b"\x00\x01garbage\n",
    "server_errors.jsonl": b"[[[\n",
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_every_command_reports_a_corrupt_file_cleanly(name: str, cli: Cli, data_dir: Path) -> None:
    path = data_dir / name
    path.write_bytes(CORRUPT[name])
    named = 0
    for args in DATA_DIR_COMMANDS:
        result = cli.local(*args)
        shown = " ".join(args)
        # A known error is a message and an exit code, never an exception.
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            shown,
            result.exception,
        )
        assert "Traceback" not in result.output, (shown, result.output)
        assert result.exit_code in (0, 1), (shown, result.exit_code, result.output)
        message = result.stderr.strip()
        if result.exit_code == 1 and message.startswith("storage error"):
            assert result.stdout == "", (shown, result.stdout)
            assert len(message.splitlines()) == 1, (shown, message)
            # The file is named once, with what to do about it, once.
            assert message.count(name) == 1, (shown, message)
            assert message.count("aside") == 1, (shown, message)
            assert "untouched; it is left" not in message, (shown, message)
        elif result.exit_code == 1:
            # Refusals that are not about storage: a second `go end`, an
            # audit chain broken by the corrupt line, an unknown token.
            assert args[:2] in {("go", "end"), ("audit", "verify"), ("token", "revoke")}, (
                shown,
                result.output,
            )
        if name in result.output:
            named += 1
            assert "https://errors.pydantic.dev" not in result.output, (shown, result.output)
        # Logs may grow (a decision is appended after the bad line); the
        # bad bytes themselves are never rewritten.
        assert path.read_bytes().startswith(CORRUPT[name]), f"{shown} changed {name}"
        if name.endswith(".json"):
            assert path.read_bytes() == CORRUPT[name], f"{shown} changed {name}"
    # Each file is read by at least one command, which names it (as a
    # storage error, or as a health reason).
    assert named > 0
