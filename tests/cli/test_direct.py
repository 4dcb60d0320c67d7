"""Local commands answer without the app (cli/direct.py): the same answers
and refusals the app's routes give for every request they send, read from
the same services; settings read without pydantic-settings only when the
environment holds nothing else; and no web framework imported."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Seeder
from tests.conftest import owner_token
from valhalla_gov.auth.service import LOCAL_OWNER
from valhalla_gov.cli.direct import ACTOR, NOOP_HEADER, ROUTES, full_schema
from valhalla_gov.cli.inprocess import app_client
from valhalla_gov.cli.local import (
    LOCAL_FIELDS,
    LOG_LEVELS,
    SETTING_FIELDS,
    load_settings,
    local_service,
    plain_config,
)
from valhalla_gov.cli.service import CliError, Service
from valhalla_gov.compose import SCHEMA
from valhalla_gov.go.playbook import load_playbook
from valhalla_gov.go.session_router import NOOP_HEADER as ROUTE_NOOP_HEADER
from valhalla_gov.settings import LOG_LEVELS as SETTINGS_LOG_LEVELS
from valhalla_gov.settings import Settings

PLAYBOOK = load_playbook(None)
STEP = PLAYBOOK.steps[0].id


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper().startswith("VALHALLA_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_what_is_written_out_matches_its_source() -> None:
    assert set(Settings.model_fields) == SETTING_FIELDS
    assert LOCAL_FIELDS <= SETTING_FIELDS
    assert LOG_LEVELS == SETTINGS_LOG_LEVELS
    assert LOCAL_OWNER.name == ACTOR
    assert NOOP_HEADER == ROUTE_NOOP_HEADER
    assert full_schema() == SCHEMA


@pytest.mark.parametrize(
    ("env", "flag"),
    [
        ({}, None),
        ({"VALHALLA_DATA_DIR": "from-env"}, None),
        ({}, "from-flag"),
        ({"VALHALLA_DATA_DIR": "from-env", "VALHALLA_LOG_LEVEL": "Warning"}, "from-flag"),
        ({"valhalla_playbook_file": "p.yaml", "VALHALLA_CANON_FILE": "c.yaml"}, None),
        ({"VALHALLA_DATA_DIR": "", "VALHALLA_TEST_SOMETHING": "1"}, None),  # empty is unset
    ],
)
def test_plain_settings_are_what_the_settings_read(
    env: dict[str, str], flag: str | None, clean_env: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    given = None if flag is None else Path(flag)
    settings = Settings() if given is None else Settings(data_dir=given)
    config = plain_config(given)
    assert config is not None
    assert (config.data_dir, config.canon_file, config.playbook_file) == (
        settings.data_dir,
        settings.canon_file,
        settings.playbook_file,
    )
    assert config.database_url is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VALHALLA_DATABASE_URL", "sqlite:///x.db"),
        ("VALHALLA_MAX_BODY_BYTES", "not a number"),  # a bad setting must still be reported
        ("VALHALLA_LOG_LEVEL", "loud"),
        ("valhalla_webhook_key", "short"),
    ],
)
def test_any_other_setting_lets_the_settings_decide(
    name: str, value: str, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv(name, value)
    assert plain_config(Path("d")) is None


@pytest.mark.parametrize(
    ("name", "value"), [("VALHALLA_MAX_BODY_BYTES", "lots"), ("VALHALLA_LOG_LEVEL", "loud")]
)
def test_a_bad_setting_is_reported(
    name: str, value: str, data_dir: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(CliError, match=f"bad setting: {name}"):
        local_service(data_dir)


# -- the same answers as the app ------------------------------------------------------

# Fields that differ between two runs of the same request (ids, times, secrets).
VOLATILE = re.compile(
    r"(_at_utc|^ts_utc$|^id$|^session_id$|^token$|^code$|^hash$|^head_hash$|^prev$|^checked_at_utc$"
    r"|_seconds$|^until$|^next_cursor$|^cursor$)"
)


def _normal(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _normal(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v, key) for v in value]
    if key and VOLATILE.search(key) and isinstance(value, str | int | float):
        return "<volatile>"
    if isinstance(value, str):
        return re.sub(r"[0-9a-f]{12,}", "<hex>", value)
    return value


# Requests a local command sends, in an order that exercises each route's
# answers and refusals: (method, path, params, body).
SCRIPT: list[tuple[str, str, dict[str, Any], dict[str, Any] | None]] = [
    ("GET", "/core/go/session", {}, None),
    ("POST", "/core/go/end_session", {}, {"notes": "nothing active"}),
    ("POST", "/core/go/start_session", {}, {"notes": "x" * 5000}),
    ("POST", "/core/go/start_session", {}, {"notes": "first"}),
    ("POST", "/core/go/start_session", {}, {"notes": "again"}),
    ("GET", "/core/go/checklist", {}, None),
    ("GET", "/core/go/next_step", {}, None),
    ("POST", "/core/go/complete", {}, {"step_id": "nope", "done": True, "notes": None}),
    ("POST", "/core/go/complete", {}, {"step_id": STEP, "done": True, "notes": "n"}),
    ("POST", "/core/go/end_session", {}, {"notes": "done"}),
    ("GET", "/core/go/sessions", {"limit": 5}, None),
    ("GET", "/core/go/insights", {"bucket": "day"}, None),
    ("GET", "/core/cone/state", {}, None),
    ("POST", "/core/cone/state", {}, {"band": "E", "reason": "no such band"}),
    ("POST", "/core/cone/state", {}, {"band": "C", "reason": "cash"}),
    ("POST", "/core/go/complete", {}, {"step_id": PLAYBOOK.steps[-1].id, "done": True}),
    ("POST", "/core/cone/decide", {}, {"engine": "nope", "action": "run"}),
    ("POST", "/core/cone/decide", {}, {"engine": "storage_units", "action": "scale"}),
    ("GET", "/core/audit/events", {"limit": 3}, None),
    ("GET", "/core/audit/events", {"event": "go_session_start"}, None),
    ("GET", "/core/audit/verify", {}, None),
    ("GET", "/core/audit/verify", {"anchor": "1:" + "0" * 64}, None),
    ("GET", "/core/audit/head", {}, None),
    ("POST", "/core/tokens", {}, {"name": "bad name!", "scopes": ["viewer"]}),
    ("POST", "/core/tokens", {}, {"name": "phone", "scopes": ["operator", "viewer"]}),
    ("POST", "/core/tokens", {}, {"name": "phone", "scopes": ["viewer"]}),
    ("GET", "/core/tokens", {}, None),
    ("DELETE", "/core/tokens/nobody", {}, None),
    ("DELETE", "/core/tokens/phone", {}, None),
    ("POST", "/core/auth/links", {}, None),
    ("GET", "/core/webhooks", {}, None),
    ("DELETE", "/core/webhooks/nothing", {}, None),
    ("DELETE", "/core/webhooks/bad%20name%21", {}, None),
    ("GET", "/core/go/sessions", {"cursor": "not-a-cursor"}, None),
    ("GET", "/core/audit/events", {"cursor": "not-a-cursor"}, None),
]


def _run(service: Service) -> list[Any]:
    answers: list[Any] = []
    for method, path, params, body in SCRIPT:
        try:
            resp = service.request(method, path, params=params, body=body)
            noop = resp.headers.get(NOOP_HEADER)
            answers.append((200, _normal(resp.json()), noop))
        except CliError as exc:
            # The message, with what differs between two data dirs removed.
            answers.append(
                (exc.code, re.sub(r"'[0-9A-Z]{26}'|\d{4}-\d\d-\d\dT[\d:.]+Z", "", exc.message))
            )
    return answers


def test_every_route_is_in_the_script() -> None:
    used = {(m, p) for m, p, _, _ in SCRIPT}
    for method, path in ROUTES:
        assert any(m == method and p.startswith(path) for m, p in used), (method, path)


def test_direct_answers_are_the_apps_answers(
    data_dir: Path, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    owner_token(data_dir)
    other = tmp_path / "other"
    shutil.copytree(data_dir, other)
    direct = local_service(data_dir)
    assert direct.direct is not None
    settings = load_settings(other)
    app = Service(lambda: app_client(settings), where=str(other), local=True)
    try:
        through_app = _run(app)
        # The direct service's own paths never reach its app.
        direct._client = lambda: pytest.fail("the app was built")
        answered = _run(direct)
    finally:
        app.close()
        direct.close()
    assert answered == through_app
    assert [a[0] for a in answered].count(200) >= 20  # successes, not only refusals


def test_a_direct_read_reports_a_corrupt_file_as_the_app_does(
    data_dir: Path, clean_env: pytest.MonkeyPatch
) -> None:
    corrupt = b'{"session": {"active": "very"'
    (data_dir / "go_session.json").write_bytes(corrupt)
    messages = []
    for service in (
        local_service(data_dir),
        Service(lambda: app_client(load_settings(data_dir)), where=str(data_dir), local=True),
    ):
        with pytest.raises(CliError) as refused:
            service.request("GET", "/core/go/session")
        service.close()
        messages.append(refused.value.message)
    assert messages[0] == messages[1]
    assert str(data_dir / "go_session.json") in messages[0]
    assert (data_dir / "go_session.json").read_bytes() == corrupt


def test_a_direct_verify_finds_an_edited_line(
    data_dir: Path, seeder: Seeder, clean_env: pytest.MonkeyPatch
) -> None:
    seeder.session(minutes=5, start_notes="a", end_notes="b", steps=[STEP])
    log = data_dir / "audit.log"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b'"notes":"a"', b'"notes":"A"')
    log.write_bytes(b"".join(lines))
    service = local_service(data_dir)
    result = service.request("GET", "/core/audit/verify").json()
    service.close()
    assert result["ok"] is False
    assert result["first_bad_seq"] == 1


# -- what a command imports -----------------------------------------------------------


def _imported(args: list[str], modules: list[str], env: dict[str, str]) -> dict[str, bool]:
    """Which of ``modules`` a fresh ``valhalla ARGS`` process imported."""
    code = (
        "import json, sys\n"
        f"sys.argv = ['valhalla', *{args!r}]\n"
        "from valhalla_gov.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps({{m: m in sys.modules for m in {modules!r}}}), file=sys.stderr)\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("VALHALLA_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**base, **env},
        check=True,
    )
    result: dict[str, bool] = json.loads(done.stderr.strip().splitlines()[-1])
    return result


HEAVY = [
    "fastapi",
    "starlette",
    "httpx2",
    "anyio",
    "pydantic_settings",
    "limits",
    "sqlalchemy",
    "rich",
    "yaml",  # only for a YAML canon or playbook file
    "valhalla_gov.app",
    "valhalla_gov.compose",
]
LOCAL_COMMANDS = [
    ["go", "status"],
    ["go", "start", "--notes", "x"],
    ["go", "checklist"],
    ["go", "next"],
    ["go", "complete", STEP],
    ["go", "end"],
    ["go", "history"],
    ["cone", "show"],
    ["cone", "set", "B", "--reason", "x"],
    ["audit", "tail"],
    ["audit", "verify"],
    ["audit", "head"],
    ["token", "list"],
    ["sessions", "report"],
    ["webhook", "list"],
]


def test_local_commands_import_no_web_framework(data_dir: Path) -> None:
    owner_token(data_dir)
    env = {"VALHALLA_DATA_DIR": str(data_dir), "VALHALLA_LOG_LEVEL": "warning"}
    for args in LOCAL_COMMANDS:
        imported = _imported(args, HEAVY, env)
        assert imported == dict.fromkeys(HEAVY, False), args


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["go", "--help"], ["go", "status", "--help"]]
)
def test_help_and_version_import_no_other_group_and_no_pydantic(args: list[str]) -> None:
    # The group asked for is imported; no other, and no pydantic: typer would
    # import it to read the flags not given (see cli/helpstyle.py).
    groups = [f"valhalla_gov.cli.{name}" for name in ("audit", "token", "sessions")]
    modules = ["pydantic", *groups]
    assert _imported(args, modules, {}) == dict.fromkeys(modules, False)
