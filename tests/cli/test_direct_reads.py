"""The local CLI's one direct read (``go status`` without building the app):
it is taken only when the settings could not change its answer, it answers
exactly what the app's route answers (errors included), and the commands
that do not need a library do not import it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.audit.helpers import record_events
from tests.cli.conftest import Seeder
from tests.conftest import FakeClock, _truncate
from valhalla_gov.cli.inprocess import app_client
from valhalla_gov.cli.local import (
    DIRECT_READS,
    SETTING_FIELDS,
    DirectReads,
    load_settings,
    local_service,
    plain_data_dir,
    plain_database_url,
)
from valhalla_gov.cli.service import CliError, Service
from valhalla_gov.compose import open_sql
from valhalla_gov.go.playbook import load_playbook
from valhalla_gov.settings import Settings

PLAYBOOK = load_playbook(None)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper().startswith("VALHALLA_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_the_setting_names_are_the_settings_fields() -> None:
    assert set(Settings.model_fields) == SETTING_FIELDS


@pytest.mark.parametrize(
    ("env_dir", "flag"),
    [(None, None), ("from-env", None), (None, "from-flag"), ("from-env", "from-flag")],
)
def test_plain_data_dir_is_the_settings_data_dir(
    env_dir: str | None, flag: str | None, clean_env: pytest.MonkeyPatch
) -> None:
    if env_dir is not None:
        clean_env.setenv("VALHALLA_DATA_DIR", env_dir)
    clean_env.setenv("VALHALLA_TEST_SOMETHING", "1")  # not a setting: no matter
    given = None if flag is None else Path(flag)
    settings = Settings() if given is None else Settings(data_dir=given)
    assert plain_data_dir(given) == settings.data_dir
    # Nothing else is set, so the app would start with these defaults.
    assert (settings.database_url, settings.canon_file, settings.playbook_file) == (None,) * 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VALHALLA_DATABASE_URL", "sqlite:///x.db"),
        ("VALHALLA_CANON_FILE", "canon.yaml"),
        ("valhalla_playbook_file", "playbook.yaml"),  # any case, as pydantic-settings reads it
        ("VALHALLA_MAX_BODY_BYTES", "not a number"),  # a bad setting must still be reported
        ("VALHALLA_DATA_DIR", ""),
    ],
)
def test_any_other_setting_lets_the_settings_decide(
    name: str, value: str, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv(name, value)
    assert plain_data_dir(Path("d")) is None


def test_a_bad_setting_is_reported_as_before(data_dir: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("VALHALLA_MAX_BODY_BYTES", "lots")
    with pytest.raises(CliError, match="bad setting: VALHALLA_MAX_BODY_BYTES"):
        local_service(data_dir)


def _both(data_dir: Path | None, path: str) -> tuple[object, object]:
    """The answer (or refusal) of the direct read and of the app, for one GET."""
    direct = local_service(data_dir)
    assert direct.direct is not None
    assert direct.direct(path) is not None
    settings = load_settings(data_dir)
    app = Service(lambda: app_client(settings), where=str(data_dir), local=True)
    answers: list[object] = []
    for service in (direct, app):
        try:
            answers.append(service.request("GET", path).json())
        except CliError as exc:
            answers.append((exc.message, exc.code))
        finally:
            service.close()
    return answers[0], answers[1]


def _verified(data_dir: Path | None) -> dict[str, Any]:
    """GET /core/audit/verify answered the same by the direct read and the app."""
    direct, app = _both(data_dir, "/core/audit/verify")
    assert direct == app
    assert isinstance(direct, dict)
    return direct


def test_every_direct_read_is_tested() -> None:
    assert sorted(DIRECT_READS) == ["/core/audit/verify", "/core/go/session"]


@pytest.mark.parametrize("path", sorted(DIRECT_READS))
def test_a_direct_read_answers_what_the_app_answers(
    path: str, data_dir: Path, seeder: Seeder, clean_env: pytest.MonkeyPatch
) -> None:
    direct, app = _both(data_dir, path)  # never started
    assert direct == app
    seeder.session(minutes=5, start_notes="a", end_notes="b", steps=[PLAYBOOK.steps[0].id])
    direct, app = _both(data_dir, path)  # the last, ended
    assert direct == app
    assert isinstance(direct, dict)
    if path == "/core/go/session":
        assert direct["end_notes"] == "b"
    else:
        assert direct["ok"] is True
        assert direct["events"] >= 2


def test_a_direct_verify_finds_an_edited_line_as_the_app_does(
    data_dir: Path, seeder: Seeder, clean_env: pytest.MonkeyPatch
) -> None:
    seeder.session(minutes=5, start_notes="a", end_notes="b", steps=[PLAYBOOK.steps[0].id])
    log = data_dir / "audit.log"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b'"notes":"a"', b'"notes":"A"')
    assert b'"notes":"A"' in lines[0]
    log.write_bytes(b"".join(lines))
    direct = _verified(data_dir)
    assert direct["ok"] is False
    assert direct["first_bad_seq"] == 1


def test_a_direct_read_reports_a_corrupt_file_as_the_app_does(
    data_dir: Path, clean_env: pytest.MonkeyPatch
) -> None:
    corrupt = b'{"session": {"active": "very"'
    (data_dir / "go_session.json").write_bytes(corrupt)
    direct, app = _both(data_dir, "/core/go/session")
    assert direct == app
    assert isinstance(direct, tuple)
    assert direct[1] == 1
    assert str(data_dir / "go_session.json") in str(direct[0])
    assert (data_dir / "go_session.json").read_bytes() == corrupt


def test_other_requests_still_go_to_the_app(data_dir: Path, clean_env: pytest.MonkeyPatch) -> None:
    reads = DirectReads(data_dir)
    assert reads("/core/go/sessions") is None
    assert reads("/core/go/summary") is None


def _imported(args: list[str], modules: list[str]) -> dict[str, bool]:
    """Which of ``modules`` a fresh ``valhalla ARGS`` process imported."""
    code = (
        "import json, sys\n"
        f"sys.argv = ['valhalla', *{args!r}]\n"
        "from valhalla_gov.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps({{m: m in sys.modules for m in {modules!r}}}), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("VALHALLA_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    result: dict[str, bool] = json.loads(done.stderr.strip().splitlines()[-1])
    return result


HEAVY = ["fastapi", "httpx2", "pydantic_settings", "limits", "sqlalchemy", "valhalla_gov.app"]


def test_go_status_on_a_data_dir_imports_no_app(data_dir: Path) -> None:
    imported = _imported(["go", "status", "--data-dir", str(data_dir)], HEAVY)
    assert imported == dict.fromkeys(HEAVY, False)


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["go", "--help"], ["go", "status", "--help"]]
)
def test_help_and_version_import_no_other_group_and_no_pydantic(args: list[str]) -> None:
    # The group asked for is imported; no other, and no pydantic: typer would
    # import it to read the flags not given (see cli/helpstyle.py).
    groups = [f"valhalla_gov.cli.{name}" for name in ("audit", "token", "sessions")]
    modules = ["pydantic", *groups]
    assert _imported(args, modules) == dict.fromkeys(modules, False)


def test_a_database_url_alone_is_a_plain_database(clean_env: pytest.MonkeyPatch) -> None:
    assert plain_database_url(None) is None
    clean_env.setenv("VALHALLA_DATABASE_URL", "sqlite:///x.db")
    assert plain_database_url(None) == "sqlite:///x.db"
    assert plain_database_url(Path("d")) is None  # a flag: the settings decide
    clean_env.setenv("VALHALLA_CANON_FILE", "canon.yaml")
    assert plain_database_url(None) is None


def test_a_direct_verify_on_postgresql_answers_what_the_app_answers(
    pg_url: str, clean_env: pytest.MonkeyPatch
) -> None:
    _truncate(pg_url)
    clean_env.setenv("VALHALLA_DATABASE_URL", pg_url)
    store = open_sql(pg_url)
    try:
        record_events(store, FakeClock(), 12)
    finally:
        store.close()
    direct = _verified(None)
    assert direct["ok"] is True
    assert direct["events"] == 12
    store = open_sql(pg_url)
    try:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE log_records SET body = replace(body, '\"i\":9', '\"i\":99') "
                "WHERE log = 'audit'"
            )
    finally:
        store.close()
    direct = _verified(None)
    assert direct["ok"] is False
    assert direct["first_bad_seq"] == 10


def test_other_requests_on_a_database_still_go_to_the_app() -> None:
    reads = DirectReads(database_url="sqlite:///never-opened.db")
    assert reads("/core/go/session") is None
    assert reads("/core/go/summary") is None
