"""`valhalla serve`'s log lines as people and collectors get them: readable
text on a terminal, JSON Lines otherwise (VALHALLA_LOG_FORMAT overrides), and
VALHALLA_LOG_LEVEL obeyed by every line, uvicorn's included."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.live.server import VALHALLA, free_port

pytestmark = pytest.mark.live

ACCESS = "GET /core/healthz 200"
# uvicorn's own info lines (from its "uvicorn.error" logger).
UVICORN_INFO = ("Started server process", "Application startup complete", "Uvicorn running")


def _read(fd: int, wait: float) -> bytes | None:
    """What is there to read within ``wait`` seconds; None at the end."""
    if not select.select([fd], [], [], wait)[0]:
        return b""
    try:
        chunk = os.read(fd, 65536)
    except OSError:  # a pty's reader once the writer is gone
        return None
    return chunk or None


def _serve_and_ask(tmp_path: Path, env: dict[str, str], *, terminal: bool) -> list[str]:
    """Start `valhalla serve` (stderr a pseudo-terminal, or a pipe), ask
    /core/healthz once, stop it; every line it wrote to stderr."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    full_env.update(env)
    argv = [VALHALLA, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    if terminal:
        reader, writer = pty.openpty()
    else:
        reader, writer = os.pipe()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=writer,
        env=full_env,
        start_new_session=True,
    )
    os.close(writer)
    output = b""
    try:
        deadline = time.monotonic() + 60
        asked = False
        while time.monotonic() < deadline:
            chunk = _read(reader, 0.2)
            if chunk is None:
                break
            output += chunk
            if not asked:
                try:
                    asked = httpx.get(f"http://127.0.0.1:{port}/core/healthz").status_code == 200
                except httpx.TransportError:
                    continue
            elif ACCESS.encode() in output or b'"route": "/core/healthz"' in output:
                break
            elif env.get("VALHALLA_LOG_LEVEL") == "warning" and b"sign in" in output:
                time.sleep(1)  # an access line would have come by now
                break
        assert asked, output.decode(errors="replace")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        while chunk := _read(reader, 0.5):
            output += chunk
        os.close(reader)
    return output.decode("utf-8", errors="replace").replace("\r\n", "\n").splitlines()


def _json_lines(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_logs_are_json_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    lines = _serve_and_ask(tmp_path, {}, terminal=False)
    records = _json_lines(lines)
    access = [r for r in records if r.get("route") == "/core/healthz"]
    assert access, lines
    assert access[0]["msg"] == ACCESS
    assert any(r["logger"] == "uvicorn.error" for r in records), lines
    # Every log line is JSON: the others are serve's own messages to the operator.
    others = [line for line in lines if not line.startswith("{")]
    assert all(line.startswith(("valhalla:", "created ")) for line in others), others


def test_logs_are_text_lines_on_a_terminal(tmp_path: Path) -> None:
    lines = _serve_and_ask(tmp_path, {}, terminal=True)
    assert not any(line.startswith("{") for line in lines), lines
    [access] = [line for line in lines if ACCESS in line]
    # "09:30:01.234 INFO    GET /core/healthz 200 latency_ms=... actor=..."
    time_of_day, level, *rest = access.split()
    assert len(time_of_day) == 12
    assert time_of_day[2] == ":"
    assert level == "INFO"
    assert " ".join(rest).startswith(ACCESS)
    assert "latency_ms=" in access
    assert any("INFO" in line and "Uvicorn running" in line for line in lines), lines


def test_the_log_format_setting_overrides_the_terminal(tmp_path: Path) -> None:
    on_terminal = _serve_and_ask(tmp_path, {"VALHALLA_LOG_FORMAT": "json"}, terminal=True)
    assert any(r.get("route") == "/core/healthz" for r in _json_lines(on_terminal)), on_terminal
    piped = _serve_and_ask(tmp_path, {"VALHALLA_LOG_FORMAT": "text"}, terminal=False)
    assert not _json_lines(piped), piped
    assert any(ACCESS in line and "INFO" in line for line in piped), piped


def test_the_log_level_setting_is_obeyed_uvicorn_included(tmp_path: Path) -> None:
    lines = _serve_and_ask(tmp_path, {"VALHALLA_LOG_LEVEL": "warning"}, terminal=False)
    assert any("sign in" in line for line in lines), lines  # it did start
    records = _json_lines(lines)
    assert not [r for r in records if r["level"] in ("info", "debug", "trace")], records
    assert not [line for line in lines if any(bit in line for bit in UVICORN_INFO)], lines
