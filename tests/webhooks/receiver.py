"""A real HTTP receiver on loopback for webhook tests: records every POST,
answers with whatever status the test sets, and can go down and come back
on the same port."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def delivery(self) -> str:
        return self.headers["x-valhalla-delivery"]

    @property
    def event(self) -> str:
        return self.headers["x-valhalla-event"]

    def signed_with(self, secret: str) -> bool:
        """The receiver's side of the contract: HMAC-SHA256 of the exact body."""
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("x-valhalla-signature", ""))


class Receiver:
    """``with Receiver() as rx: ... rx.url ... rx.received``."""

    def __init__(self, port: int | None = None) -> None:
        # Until start(), the port is held bound but not listening: connections
        # are refused, and no other process on this busy machine can take it.
        self._hold: socket.socket | None = socket.socket()
        self._hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._hold.bind(("127.0.0.1", port or 0))
        self.port: int = self._hold.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.status = 200
        self.location: str | None = None  # answered with 3xx statuses
        self.body = b"ok"
        self.delay = 0.0
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Receiver:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with owner._lock:
                    owner.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                if owner.delay:
                    time.sleep(owner.delay)
                self.send_response(owner.status)
                if owner.location:
                    self.send_header("Location", owner.location)
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        if self._hold is not None:
            self._hold.close()
            self._hold = None
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._hold is not None:
            self._hold.close()
            self._hold = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        with self._lock:
            raise AssertionError(
                f"expected {count} deliveries within {timeout}s, got {len(self.received)}: "
                f"{[r.event for r in self.received]}"
            )

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
