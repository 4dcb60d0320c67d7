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
    ("VALHALLA_DATABASE_URL", "mysql://db/valhalla", "'mysql' is not supported"),
    ("VALHALLA_MAX_CONNECTIONS", "lots", "valid integer"),
    ("VALHALLA_TRUSTED_PROXIES", "10.0.0.1,proxy.example", "'proxy.example' is not an IP"),
    ("VALHALLA_LOG_LEVEL", "loud", "'loud' is not one of"),
    ("VALHALLA_WEBHOOK_KEY", "short", "at least 32 characters"),
    ("VALHALLA_WEBHOOK_LEASE_SECONDS", "1", "webhook_lease_seconds"),
]
# The same path, checked in this process (each `serve` above costs a start).
MORE_BAD = [
    ("VALHALLA_MAX_CONNECTIONS_PER_CLIENT", "0", "greater than or equal to 1"),
    ("VALHALLA_WRITE_TIMEOUT_SECONDS", "-1", "greater than 0"),
    ("VALHALLA_HEADER_TIMEOUT_SECONDS", "soon", "valid number"),
    ("VALHALLA_RATE_LIMIT_WRITES", "lots", "not a rate limit"),
    ("VALHALLA_RATE_LIMIT_FAIL_OPEN", "maybe", "valid boolean"),
]


@pytest.mark.parametrize(("name", "value", "says"), BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_a_bad_setting_is_one_line_and_creates_nothing(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    done = _serve(tmp_path, {name: value})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert lines[0].startswith("cannot start: bad setting: ")
    if name != "VALHALLA_WEBHOOK_LEASE_SECONDS":  # a check across two settings
        assert name in lines[0]
    assert says in lines[0]
    assert "Value error" not in lines[0]
    assert "VALHALLA_:" not in lines[0]
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
    assert refused.value.message.startswith(f"error: bad setting: {name}: ")
    assert says in refused.value.message
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
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "cannot start: --log-level 'loud' is not one of critical, error, warning, info, "
        "debug, trace"
    ]
    assert not (tmp_path / "data").exists()
