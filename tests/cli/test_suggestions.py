"""A mistyped command gets a suggestion; -h is --help everywhere."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Cli


@pytest.mark.parametrize(
    ("args", "meant"),
    [(["og", "status"], "`go`"), (["toekn", "list"], "`token`"), (["go", "stauts"], "`status`")],
)
def test_a_mistyped_command_gets_a_suggestion(cli: Cli, args: list[str], meant: str) -> None:
    result = cli.run(*args)
    assert result.exit_code == 2
    assert f"Did you mean {meant}" in result.stderr


@pytest.mark.parametrize("args", [["-h"], ["go", "-h"], ["go", "status", "-h"], ["audit", "-h"]])
def test_dash_h_is_help(cli: Cli, args: list[str]) -> None:
    result = cli.run(*args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: ")
    assert result.stdout == cli.run(*args[:-1], "--help").stdout


@pytest.mark.parametrize("args", [["-h"], ["go", "-h"], ["go", "status", "-h"]])
def test_dash_h_imports_no_pydantic(args: list[str]) -> None:
    from tests.cli.test_direct import _imported

    assert _imported(args, ["pydantic"], {}) == {"pydantic": False}
