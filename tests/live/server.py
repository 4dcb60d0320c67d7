"""Start the real ``valhalla serve`` in a subprocess, as a user would."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx2 as httpx

VALHALLA = str(Path(sys.executable).with_name("valhalla"))


# Storms and races send far more writes than the defaults allow; tests of the
# limits themselves pass their own values.
GENEROUS_LIMITS = {
    "VALHALLA_RATE_LIMIT_START_SESSION": "1000000/hour",
    "VALHALLA_RATE_LIMIT_WRITES": "1000000/minute",
}


# Servers listen below the kernel's ephemeral range (outgoing connections take
# ports from there, so a port found free there could be taken before the
# server binds it), each pytest-xdist worker in its own block of ports.
_PORT_BLOCK = 1000
_FIRST_PORT = 20000
# Where in its block this process starts: two test runs at once (two
# checkouts) rarely try the same port, and a server answering on a port is
# checked to be this run's (LiveServer._answers_as_ours).
_next_port = itertools.count(random.randrange(_PORT_BLOCK))


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = _FIRST_PORT + _PORT_BLOCK * (int(worker) if worker.isdigit() else 0)
    for _ in range(_PORT_BLOCK):
        port = base + next(_next_port) % _PORT_BLOCK
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (a server another test left, or anyone's)
            return port
    raise RuntimeError(f"no free port in {base}-{base + _PORT_BLOCK - 1}")


class LiveServer:
    """``valhalla serve`` in its own process group (so kill -9 reaches workers)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        workers: int = 1,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        log_level: str = "warning",
    ) -> None:
        self.log_level = log_level
        self.data_dir = data_dir
        self.workers = workers
        self.env = {**GENEROUS_LIMITS, **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or data_dir.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    @property
    def owner_token(self) -> str:
        """The owner credential `valhalla serve` created in its data dir."""
        return (self.data_dir / "owner.token").read_text().strip()

    @property
    def headers(self) -> dict[str, str]:
        """What the data dir's owner sends: its credential (no address is trusted)."""
        return {"Authorization": f"Bearer {self.owner_token}"}

    def client(self, **kwargs: object) -> httpx.Client:
        """An HTTP client of the server as its owner."""
        options: dict[str, object] = {"timeout": 10, **kwargs}
        return httpx.Client(base_url=self.url, headers=self.headers, **options)  # type: ignore[arg-type]

    def new_signin_link(self, path: str = "/") -> str:
        """A fresh one-time sign-in link for the page at ``path``, made as
        `valhalla token link --url` makes it (the owner asks the server)."""
        with self.client() as http:
            made = http.post("/core/auth/links")
        assert made.status_code == 201, made.text
        return f"{self.url}{path}#signin={made.json()['code']}"

    def signin_link(self) -> str:
        """The last sign-in link `valhalla serve` printed."""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_start)
            text = log.read().decode(errors="replace")
        links = [w for w in text.split() if "/#signin=" in w]
        assert links, f"no sign-in link printed:\n{text}"
        return links[-1]

    def start(self, timeout: float = 90.0) -> LiveServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            self._log_start = log.tell()  # a restart appends; count this run only
            self.proc = subprocess.Popen(
                [
                    VALHALLA,
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--workers",
                    str(self.workers),
                    "--log-level",
                    self.log_level,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if (
                    httpx.get(f"{self.url}/core/healthz", timeout=1).status_code == 200
                    and self._workers_started() >= self._workers_to_wait_for()
                    and self._answers_as_ours()
                ):
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not answer in {timeout}s:\n{self.log_path.read_text()}")

    def _answers_as_ours(self) -> bool:
        """The server on the port knows this data dir's owner credential: it
        is this one, not another test run's that took the port first."""
        if not (self.data_dir / "owner.token").exists():
            return True  # a replica whose credential lives in another data dir
        answer = httpx.get(f"{self.url}/core/whoami", headers=self.headers, timeout=1)
        return answer.status_code == 200

    def _workers_to_wait_for(self) -> int:
        # The first worker to answer says nothing of the others, which on a
        # busy machine can still be importing: a test that needs requests
        # spread over workers would have them all go to the first. Their
        # start-up lines are logged at info and below only.
        return self.workers if self.log_level in ("info", "debug", "trace") else 0

    def _workers_started(self) -> int:
        with open(self.log_path, "rb") as log:
            log.seek(self._log_start)
            text = log.read().decode(errors="replace")
        pids: set[object] = set()
        for line in text.splitlines():
            if line.startswith("{") and "Application startup complete" in line:
                with contextlib.suppress(ValueError):
                    pids.add(json.loads(line).get("pid"))
        return len(pids)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group and wait for the main process."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
