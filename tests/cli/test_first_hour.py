"""The first hour of a new operator (issue #11): no data dir made by
accident, no silent no-ops, a version, clear refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer

from tests.cli.conftest import Cli
from valhalla_gov import __version__
from valhalla_gov.cli import app
from valhalla_gov.compose import open_json
from valhalla_gov.storage.errors import StorageUnavailableError

# Every command that works on a data dir, with arguments it accepts.
DATA_DIR_COMMANDS: list[tuple[str, ...]] = [
    ("go", "status"),
    ("go", "start"),
    ("go", "end", "--notes", "n"),
    ("go", "history"),
    ("go", "next"),
    ("go", "checklist"),
    ("go", "complete", "preflight_view_dashboard"),
    ("cone", "show"),
    ("cone", "set", "C", "--reason", "r"),
    ("cone", "decide", "flips", "run"),
    ("audit", "tail"),
    ("audit", "verify"),
    ("sessions", "export"),
    ("token", "create", "--name", "t", "--scopes", "viewer"),
    ("token", "list"),
    ("token", "revoke", "t"),
]


@pytest.mark.parametrize("args", DATA_DIR_COMMANDS, ids=" ".join)
def test_a_missing_data_dir_is_refused_and_not_created(
    args: tuple[str, ...], cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    typo = tmp_path / "typo"
    flagged = cli.run(*args, "--data-dir", str(typo))
    assert flagged.exit_code == 1, flagged.output
    assert flagged.stdout == ""
    assert f"no data dir at {typo}" in flagged.stderr
    assert f"`valhalla init {typo}`" in flagged.stderr
    assert "--url" in flagged.stderr
    assert not typo.exists()

    from_env = cli.run(*args, env={"VALHALLA_DATA_DIR": str(typo)})
    assert from_env.exit_code == 1
    assert "$VALHALLA_DATA_DIR" in from_env.stderr
    assert not typo.exists()

    # No flag, no variable: ./data of the current directory, never created.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    default = cli.run(*args)
    assert default.exit_code == 1
    assert f"no data dir at {elsewhere / 'data'}" in default.stderr
    assert not (elsewhere / "data").exists()


def test_init_creates_a_data_dir_once(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "new" / "data"
    made = cli.run("init", str(target))
    assert made.exit_code == 0, made.output
    assert f"created data dir {target}" in made.stdout
    assert f"created the owner credential {target / 'owner.token'}" in made.stdout
    assert target.is_dir()
    assert (target / "owner.token").stat().st_mode & 0o777 == 0o600
    credential = (target / "owner.token").read_text()
    status = cli.run("go", "status", "--data-dir", str(target))
    assert status.exit_code == 0
    assert "no session has been started yet" in status.stdout
    again = cli.run("init", str(target))
    assert again.exit_code == 0
    assert "exists; left as it is" in again.stdout
    assert "owner credential" not in again.stdout
    assert (target / "owner.token").read_text() == credential


def test_a_file_where_the_data_dir_should_be_is_refused(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = cli.run("go", "status", "--data-dir", str(tmp_path / "file"))
    assert result.exit_code == 1
    assert "is not a directory" in result.stderr


def _every_command() -> list[tuple[str, ...]]:
    """The path of every command, group by group (``("go", "complete")``)."""
    from typer._click import Context
    from typer.core import TyperGroup

    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    ctx = Context(root)
    paths: list[tuple[str, ...]] = []
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        if isinstance(command, TyperGroup):
            paths += [(name, sub) for sub in command.list_commands(ctx)]
        else:
            paths.append((name,))
    return paths


def test_version_and_help(cli: Cli) -> None:
    version = cli.run("--version")
    assert version.exit_code == 0
    assert version.stdout.strip() == f"valhalla {__version__}"


@pytest.mark.parametrize("command", _every_command(), ids=" ".join)
def test_help_is_in_one_style(command: tuple[str, ...], cli: Cli) -> None:
    # Arguments and values by upper-case names (STEP, --name NAME), optional
    # ones in brackets, choices as a|b: no Python types, no braces.
    helped = cli.run(*command, "--help")
    assert helped.exit_code == 0, helped.output
    text = helped.stdout
    assert not re.findall(r"<[a-z|]+>", text), text
    assert "[[" not in text
    usage = text.splitlines()[0]
    assert usage.endswith(f" {' '.join(command)} [OPTIONS]") or (
        f" {' '.join(command)} [OPTIONS] " in usage
    ), usage
    pieces = usage.split("[OPTIONS]", 1)[1].split()
    assert all(re.fullmatch(r"\[?[A-Z][A-Z0-9_]*(\.\.\.)?\]?", p) for p in pieces), usage
    listed = re.findall(r"^  ([A-Z][A-Z0-9_]*)  ", text.split("Options:")[0], re.MULTILINE)
    assert listed == [p.strip("[]") for p in pieces], text
    value = r"( [A-Z][A-Z0-9_:-]*| [a-z]+(\|[a-z]+)+)?"  # NAME, or a|b|c, or a flag
    for line in text.split("Options:")[1].splitlines():
        option = line.strip().split("  ")[0]
        if option.startswith("--"):
            assert re.fullmatch(rf"--[a-z-]+{value}", option), line


def test_missing_arguments_are_named_as_in_the_help(cli: Cli) -> None:
    for command, name in ((("go", "complete"), "STEP"), (("webhook", "add"), "URL")):
        result = cli.run(*command)
        assert result.exit_code == 2
        assert f"Missing argument '{name}'" in result.output


def test_token_create_shows_the_header(cli: Cli) -> None:
    empty = cli.local("token", "list")
    assert empty.exit_code == 0
    assert "valhalla init" in empty.stdout
    first = cli.local("token", "create", "--name", "ops", "--scopes", "owner")
    assert first.exit_code == 0, first.output
    assert "Protected mode" not in first.stdout
    assert "curl -H 'Authorization: Bearer <token>'" in first.stdout
    token = first.stdout.strip().splitlines()[-1]
    assert token.startswith("vgo_")
    second = cli.local("token", "create", "--name", "phone", "--scopes", "viewer,operator")
    assert second.exit_code == 0
    listed = json.loads(cli.local("token", "list", "--json").stdout)
    assert [(t["name"], t["scopes"]) for t in listed] == [
        ("ops", ["owner"]),
        ("phone", ["viewer", "operator"]),
    ]
    events = json.loads(cli.local("audit", "tail", "--json").stdout)
    assert [(e["event"], e["actor"]) for e in events] == [
        ("TOKEN_CREATE", "local"),
        ("TOKEN_CREATE", "local"),
    ]
    gone = cli.local("token", "revoke", "phone")
    assert gone.exit_code == 0
    missing = cli.local("token", "revoke", "phone")
    assert missing.exit_code == 1
    assert "no token named 'phone'" in missing.stderr


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/core", "http://127.0.0.1:8000/core/go/session", "http://h/docs"],
)
def test_a_url_naming_an_endpoint_is_refused_with_the_fix(cli: Cli, url: str) -> None:
    result = cli.run("go", "status", "--url", url)
    assert result.exit_code == 2
    assert "names an endpoint, not the server" in result.stderr
    root = url.split("/", 3)
    assert f"--url {root[0]}//{root[2]} " in result.stderr


def test_event_names_match_in_any_case(cli: Cli) -> None:
    assert cli.local("go", "start").exit_code == 0
    lower = cli.local("audit", "tail", "--event", "go_session_start", "--json")
    assert lower.exit_code == 0, lower.output
    assert [e["event"] for e in json.loads(lower.stdout)] == ["GO_SESSION_START"]


def test_grammar_for_one(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli.local("go", "start").exit_code == 0
    assert cli.local("go", "end").exit_code == 0
    out = tmp_path / "one.csv"
    exported = cli.local("sessions", "export", "--output", str(out))
    assert exported.exit_code == 0
    assert "exported 1 session to" in exported.stderr


def test_a_store_opened_without_create_refuses_a_missing_dir(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    assert open_json(tmp_path / "data", create=False).data_dir == tmp_path / "data"
    with pytest.raises(StorageUnavailableError, match="no such data dir"):
        open_json(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


def test_the_cli_copies_of_the_names_match_the_app() -> None:
    """The CLI spells these out so `--help` imports no model; they must agree."""
    from valhalla_gov.cli import cone as cli_cone
    from valhalla_gov.cli import insights as cli_insights
    from valhalla_gov.cone.canon import ACTIONS, BAND_MEANING, BANDS
    from valhalla_gov.health.models import STATUSES

    assert tuple(BANDS) == cli_cone.BANDS
    assert dict(BAND_MEANING) == cli_cone.BAND_MEANING
    assert tuple(ACTIONS) == cli_cone.ACTIONS
    # What insights counts by (it has no spelling of its own any more).
    assert cli_insights.BANDS == BANDS
    assert cli_insights.STATUSES == STATUSES
