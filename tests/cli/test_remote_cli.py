"""Remote mode: the real ``valhalla`` executable (and the in-process app)
with ``--url`` against a real ``valhalla serve``."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.cli.conftest import Cli
from tests.live.server import VALHALLA, LiveServer, free_port
from valhalla_gov.auth.service import create_token
from valhalla_gov.cli.sessions import COLUMNS
from valhalla_gov.compose import open_json
from valhalla_gov.go.playbook import load_playbook
from valhalla_gov.timeutil import utc_now

pytestmark = pytest.mark.live

FIRST = load_playbook(None).steps[0].id


def valhalla(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed executable, with no VALHALLA_* setting from this shell."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    return subprocess.run(
        [VALHALLA, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**clean, "COLUMNS": "250", **env},
        timeout=60,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("remote") / "data") as live:
        yield live


def test_session_workflow_with_the_real_executable(
    server: LiveServer, cli: Cli, tmp_path: Path
) -> None:
    url = ("--url", server.url)
    # On the server's machine, as the account that owns its data dir: no
    # token to pass, the data dir's owner credential is used.
    here = {"VALHALLA_DATA_DIR": str(server.data_dir)}
    started = valhalla("go", "start", "--notes", "over http", "--json", *url, **here)
    assert started.returncode == 0, started.stderr
    session = json.loads(started.stdout)
    assert session["active"] is True
    assert session["started_by"] == "local"  # the owner credential's name

    again = cli.run("go", "start", *url, env=dict(here))  # in-process: an executable costs 1 s
    assert again.exit_code == 1
    assert "already active" in again.stderr
    assert "`valhalla go end` ends it" in again.stderr

    done = valhalla("go", "complete", FIRST, "--notes", "looked", "--json", *url, **here)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["session_id"] == session["id"]

    ended = valhalla("go", "end", "--notes", "all good", "--json", *url, **here)
    assert ended.returncode == 0, ended.stderr
    finished = json.loads(ended.stdout)
    assert finished["id"] == session["id"]
    assert finished["steps_completed"] == [FIRST]

    history = valhalla("go", "history", "--json", *url, **here)
    assert history.returncode == 0, history.stderr
    assert [s["id"] for s in json.loads(history.stdout)][:1] == [session["id"]]

    out = tmp_path / "sessions.csv"
    export = valhalla(
        "sessions", "export", "--since", session["started_at_utc"], "-o", str(out), *url, **here
    )
    assert export.returncode == 0, export.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert list(rows[0]) == list(COLUMNS)
    assert [r["id"] for r in rows] == [session["id"]]
    assert float(rows[0]["duration_seconds"]) == finished["duration_seconds"]
    assert rows[0]["steps_completed"] == FIRST
    assert rows[0]["start_notes"] == "over http"
    assert rows[0]["end_notes"] == "all good"


def test_every_group_in_process_over_http(server: LiveServer, cli: Cli) -> None:
    def remote(*args: str) -> tuple[int, str, str]:
        result = cli.run(
            *args, "--url", server.url, env={"VALHALLA_DATA_DIR": str(server.data_dir)}
        )
        return result.exit_code, result.stdout, result.stderr

    code, out, _ = remote("cone", "set", "c", "--reason", "remote drill", "--json")
    assert code == 0
    assert json.loads(out)["band"] == "C"
    code, out, _ = remote("cone", "show")
    assert "band C (stabilize)" in out
    code, out, _ = remote("cone", "decide", "flips", "scale", "--json")
    assert code == 0
    assert json.loads(out)["allowed"] is False
    code, _, err = remote("cone", "decide", "moon_base", "run")
    assert code == 2
    assert "known engines" in err
    code, _, err = remote("go", "complete", "no_such_step")
    assert code == 2
    assert FIRST in err

    code, out, _ = remote("go", "next", "--json")
    assert code == 0
    assert json.loads(out)["cone_band"] == "C"
    code, out, _ = remote("go", "checklist")
    assert code == 0
    assert FIRST in out

    code, out, _ = remote("audit", "tail", "-n", "5", "--json")
    assert code == 0
    # The band's move also changed the health light (recorded by the server
    # whenever it judged it): the two writes are the last of the others.
    written = [e["event"] for e in json.loads(out) if e["event"] != "HEALTH_CHANGED"]
    assert written[-2:] == ["CONE_SET", "CONE_DENY"]
    code, out, _ = remote("audit", "verify")
    assert code == 0
    assert "audit chain OK" in out

    code, out, _ = remote("sessions", "export", "--format", "json", "--since", "2000-01-01")
    assert code == 0
    assert all(isinstance(r["duration_seconds"], float) for r in json.loads(out))


def test_a_corrupt_file_on_the_server_is_named(server: LiveServer, cli: Cli) -> None:
    state = server.data_dir / "cone_state.json"
    before = state.read_bytes() if state.exists() else None
    state.write_text("{broken")
    try:
        result = cli.run(
            "cone", "show", "--url", server.url, env={"VALHALLA_DATA_DIR": str(server.data_dir)}
        )
        assert result.exit_code == 1
        assert "cone_state.json" in result.stderr
        assert "server storage error" in result.stderr
    finally:
        if before is None:
            state.unlink()
        else:
            state.write_bytes(before)


def test_tokens_over_http(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = open_json(data_dir)
    _, operator = create_token(
        store=store, name="phone", scopes=["operator"], actor="test", clock=utc_now
    )
    cli = Cli(tmp_path / "unused")
    with LiveServer(data_dir) as server:
        url = ("--url", server.url)
        missing = valhalla("go", "status", *url)
        assert missing.returncode == 1
        assert "pass --token" in missing.stderr
        assert "valhalla token create" in missing.stderr

        started = valhalla("go", "start", "--token", operator, "--json", *url)
        assert started.returncode == 0, started.stderr
        assert json.loads(started.stdout)["started_by"] == "phone"

        wrong = cli.run("go", "status", "--token", "vgo_wrong", *url)
        assert wrong.exit_code == 1
        assert "invalid or revoked token" in wrong.stderr

        # From the environment, as scripts should pass it.
        status = cli.run("go", "status", "--json", *url, env={"VALHALLA_TOKEN": operator})
        assert status.exit_code == 0, status.stderr
        assert json.loads(status.stdout)["active"] is True
        # An operator may not move the cone: that needs the owner scope.
        forbidden = cli.run(
            "cone", "set", "A", "--reason", "x", *url, env={"VALHALLA_TOKEN": operator}
        )
        assert forbidden.exit_code == 1
        assert "forbidden" in forbidden.stderr
        assert "owner" in forbidden.stderr
        # Without --url the token is not sent anywhere: a usage error.
        assert cli.run("go", "status", "--token", operator).exit_code == 2


def test_an_unreachable_server_exits_1(cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli.run("go", "start", "--url", url)
    assert result.exit_code == 1
    assert f"cannot reach {url}" in result.stderr
    assert "is `valhalla serve` running?" in result.stderr


def test_token_commands_against_a_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The docs' flow: VALHALLA_URL exported, tokens made where the server reads them."""
    data_dir = tmp_path / "data"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a ./data here must never be created or used
    cli = Cli(tmp_path / "unused")
    with LiveServer(data_dir) as server:
        # No token and no data dir of this server here: nobody.
        anonymous = cli.run("token", "list", env={"VALHALLA_URL": server.url})
        assert anonymous.exit_code == 1
        assert "unauthorized" in anonymous.stderr
        assert "VALHALLA_DATA_DIR" in anonymous.stderr
        assert not (elsewhere / "data").exists()
        # The server's data dir named: its owner credential is used.
        env: dict[str, str | None] = {
            "VALHALLA_URL": server.url,
            "VALHALLA_DATA_DIR": str(data_dir),
        }
        first = cli.run("token", "create", "--name", "ops", "--scopes", "owner", env=env)
        assert first.exit_code == 0, first.output
        assert "Protected mode" not in first.stdout
        owner = first.stdout.strip().splitlines()[-1]
        # The server knows it at once.
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/core/go/session").status_code == 401
            mine = http.get("/core/whoami", headers={"Authorization": f"Bearer {owner}"})
            assert mine.json()["name"] == "ops"
        env["VALHALLA_TOKEN"] = owner  # a token given wins over the data dir's credential
        second = cli.run("token", "create", "--name", "phone", "--scopes", "viewer", env=env)
        assert second.exit_code == 0, second.output
        viewer = second.stdout.strip().splitlines()[-1]
        listed = cli.run("token", "list", "--json", env=env)
        assert listed.exit_code == 0, listed.output
        assert [(t["name"], t["kind"]) for t in json.loads(listed.stdout)] == [
            ("local", "owner_credential"),
            ("ops", "token"),
            ("phone", "token"),
        ]
        assert owner not in listed.stdout
        assert server.owner_token not in listed.stdout
        # A viewer may not manage tokens.
        denied = cli.run("token", "list", env={**env, "VALHALLA_TOKEN": viewer})
        assert denied.exit_code == 1
        assert "forbidden" in denied.stderr
        assert cli.run("token", "revoke", "phone", env=env).exit_code == 0
        gone = cli.run("token", "revoke", "phone", env=env)
        assert gone.exit_code == 1
        assert "no token named 'phone'" in gone.stderr
        kept = cli.run("token", "revoke", "local", env=env)
        assert kept.exit_code == 1
        assert "rotate-owner" in kept.stderr
        events = json.loads(cli.run("audit", "tail", "--json", env=env).stdout)
        assert [(e["event"], e["actor"]) for e in events] == [
            ("TOKEN_CREATE", "local"),
            ("TOKEN_CREATE", "ops"),
            ("TOKEN_REVOKE", "ops"),
        ]
    assert not (elsewhere / "data").exists()
