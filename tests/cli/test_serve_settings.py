"""Settings as `valhalla serve` reads them: an empty variable means unset, a
bad value is one line naming it (no traceback), and a refused start leaves
nothing behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.live.server import VALHALLA, LiveServer, free_port
from valhalla_gov.cli.client import CliError
from valhalla_gov.cli.local import SETTING_FIELDS, load_settings
from valhalla_gov.settings import Settings


def _clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    env.update(settings)
    return env


def test_every_empty_setting_is_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTING_FIELDS:
        monkeypatch.setenv(f"VALHALLA_{name.upper()}", "")
    assert Settings() == Settings.model_construct()


@pytest.mark.live
def test_serve_starts_with_every_setting_empty(tmp_path: Path) -> None:
    """As a compose file writes them (``VALHALLA_REDIS_URL=``)."""
    empty = {f"VALHALLA_{name.upper()}": "" for name in SETTING_FIELDS}
    with LiveServer(tmp_path / "data", env=empty) as server:
        assert httpx.get(f"{server.url}/core/healthz", timeout=10).status_code == 200
        with server.client() as http:
            decided = http.post("/core/cone/decide", json={"engine": "flips", "action": "run"})
        assert decided.status_code == 200  # the rate limiter in memory, no Redis


def _serve(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            VALHALLA,
            "serve",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
            *args,
        ],
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _open_dir(tmp_path: Path) -> str:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    return str(shared)


# (variable, value, what the one line says besides the variable's name)
BAD = [
    ("VALHALLA_REDIS_URL", "nonsense", "not a Redis URL"),
    ("VALHALLA_REDIS_URL", "http://cache:6379", "not a Redis URL"),
    ("VALHALLA_DATABASE_URL", "nonsense", "not a database URL"),
    ("VALHALLA_DATABASE_URL", "mysql://x", "'mysql' is not supported"),
    ("VALHALLA_DATABASE_URL", "/srv/valhalla.db", "sqlite:////srv/valhalla.db"),
    ("VALHALLA_DATABASE_URL", "postgresql+psycopg2://db/v", "'postgresql+psycopg2' is not supp"),
    ("VALHALLA_MAX_CONNECTIONS", "lots", "'lots' must be a whole number"),
    ("VALHALLA_TRUSTED_PROXIES", "10.0.0.1,proxy.example", "'proxy.example' is not an IP"),
    ("VALHALLA_LOG_LEVEL", "loud", "'loud' is not one of"),
    ("VALHALLA_LOG_FORMAT", "xml", "'xml' must be 'auto', 'text' or 'json'"),
    ("VALHALLA_WEBHOOK_KEY", "short", "at least 32 characters"),
    ("VALHALLA_WEBHOOK_LEASE_SECONDS", "1", "must be more than twice"),
]
# The same path, checked in this process (each `serve` above costs a start).
MORE_BAD = [
    ("VALHALLA_MAX_CONNECTIONS_PER_CLIENT", "0", "'0' must be at least 1"),
    ("VALHALLA_WRITE_TIMEOUT_SECONDS", "-1", "'-1' must be more than 0"),
    ("VALHALLA_HEADER_TIMEOUT_SECONDS", "soon", "'soon' must be a number"),
    ("VALHALLA_RATE_LIMIT_WRITES", "lots", "not a rate limit"),
    ("VALHALLA_RATE_LIMIT_FAIL_OPEN", "maybe", "'maybe' must be true or false"),
    ("VALHALLA_EVENTS_POLL_SECONDS", "0", "'0' must be more than 0"),
]
# The validator's language, which must not reach a person.
JARGON = ("Value error", "Input should", "valid integer", "greater than or equal", "VALHALLA_:")


@pytest.mark.parametrize(("name", "value", "says"), BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_a_bad_setting_is_one_line_and_creates_nothing(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    done = _serve(tmp_path, {name: value})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "serving" not in done.stderr + done.stdout
    assert lines[0].startswith(f"cannot start: bad setting: {name}")
    assert says in lines[0]
    assert f"for example {name}=" in lines[0]  # and a good value
    assert not any(bit in lines[0] for bit in JARGON), lines[0]
    if name == "VALHALLA_WEBHOOK_KEY":
        assert value not in lines[0]  # a secret is not echoed
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("name", "value", "says"), MORE_BAD, ids=[f"{n}={v}" for n, v, _ in MORE_BAD]
)
def test_a_bad_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(CliError) as refused:
        load_settings(None)
    assert refused.value.code == 2
    assert refused.value.message.startswith(f"error: bad setting: {name}: ")
    assert says in refused.value.message
    assert f"(for example {name}=" in refused.value.message
    assert not any(bit in refused.value.message for bit in JARGON)
    assert "\n" not in refused.value.message


def test_a_bad_file_setting_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    """Settings that are checked when opened: the data dir made for the
    start is removed again."""
    for env, says in [
        ({"VALHALLA_CANON_FILE": str(tmp_path / "missing.yaml")}, "missing.yaml"),
        ({"VALHALLA_RATE_LIMIT_DIR": _open_dir(tmp_path)}, "writable by other users"),
    ]:
        done = _serve(tmp_path, env)
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("cannot start: ")
        assert says in lines[0]
        assert not (tmp_path / "data").exists()


def test_a_bad_log_level_option_is_one_line(tmp_path: Path) -> None:
    done = _serve(tmp_path, {}, "--log-level", "loud")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cannot start: bad setting: --log-level: 'loud' is not one of critical, error, warning, "
        "info, debug, trace (for example --log-level info)"
    ]
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "args", [["go", "status"], ["go", "history"], ["audit", "verify"], ["token", "list"]]
)
@pytest.mark.parametrize(
    ("name", "value"), [("VALHALLA_DATABASE_URL", "mysql://x"), ("VALHALLA_LOG_LEVEL", "loud")]
)
def test_every_command_refuses_a_bad_setting_in_one_line(
    tmp_path: Path, args: list[str], name: str, value: str
) -> None:
    (tmp_path / "data").mkdir()
    done = subprocess.run(
        [VALHALLA, *args],
        env=_clean_env(**{name: value, "VALHALLA_DATA_DIR": str(tmp_path / "data")}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: bad setting: {name}: ")
    assert f"(for example {name}=" in line
    assert list((tmp_path / "data").iterdir()) == []


def test_init_refuses_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [VALHALLA, "init", str(tmp_path / "new")],
        env=_clean_env(VALHALLA_LOG_LEVEL="loud"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: bad setting: VALHALLA_LOG_LEVEL: 'loud' is not one of critical, error, "
        "warning, info, debug, trace (for example VALHALLA_LOG_LEVEL=info)"
    ]
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_postgres_urls_are_read_as_the_psycopg_driver(
    monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    """What hosting providers and libpq write (postgres://) means the one
    PostgreSQL driver shipped."""
    monkeypatch.setenv("VALHALLA_DATABASE_URL", f"{scheme}://u:p%40ss@db.example:5433/v")
    url = load_settings(None).database_url
    assert url == "postgresql+psycopg://u:p%40ss@db.example:5433/v"


def test_a_bad_flag_is_named_as_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VALHALLA_DATABASE_URL", raising=False)
    with pytest.raises(CliError) as refused:
        load_settings(None, flags={"--database-url": "/srv/v.db"})
    assert refused.value.code == 2
    assert refused.value.message == (
        "error: bad setting: --database-url: '/srv/v.db' is a path, not a database URL "
        "(for example --database-url sqlite:////srv/v.db)"
    )
