"""A small Server-Sent Events reader for the tests: a thread per stream,
events into a queue, as a browser's EventSource would parse them."""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx


@dataclass
class Event:
    id: str | None
    event: str
    data: str

    @property
    def record(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value


@dataclass
class Stream:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    events: queue.Queue[Event] = field(default_factory=queue.Queue)
    comments: list[str] = field(default_factory=list)
    status: int | None = None
    body: str = ""
    opened: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Stream:
        threading.Thread(target=self._run, daemon=True).start()
        if not self.opened.wait(30):
            raise AssertionError(f"the stream at {self.url} did not open")
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(30, read=60)) as client,
                client.stream("GET", self.url, headers=self.headers) as response,
            ):
                self.status = response.status_code
                if response.status_code != 200:
                    self.body = response.read().decode()
                    self.opened.set()
                    return
                self._parse(response)
        except httpx.HTTPError:
            pass
        finally:
            self.opened.set()
            self.closed.set()

    def _parse(self, response: httpx.Response) -> None:
        ident: str | None = None
        name, data = "message", list[str]()
        for line in response.iter_lines():
            if self._stop.is_set():
                return
            if line.startswith(":"):
                self.comments.append(line)
                self.opened.set()  # the stream's first comment: it is open
            elif line == "":
                if data:
                    self.events.put(Event(ident, name, "\n".join(data)))
                name, data = "message", list[str]()
            else:
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "id":
                    ident = value
                elif key == "event":
                    name = value
                elif key == "data":
                    data.append(value)

    def take(self, count: int, timeout: float = 20) -> list[Event]:
        got: list[Event] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"got {len(got)} of {count} events: {got}")
            try:
                got.append(self.events.get(timeout=remaining))
            except queue.Empty:
                continue
        return got

    def quiet(self, seconds: float) -> list[Event]:
        """Whatever else arrives within ``seconds`` (expected: nothing)."""
        time.sleep(seconds)
        extra = []
        while not self.events.empty():
            extra.append(self.events.get_nowait())
        return extra
