"""A full disk under a live server: writes answer 503 naming the file,
nothing is half-written, reads keep working, and it recovers by itself.

The data dir is on a 1 MiB tmpfs (needs root: CI runs as root; elsewhere the
tests skip saying so), filled up with a filler file. tmpfs hands out space in
4 KiB pages, so shrinking the filler by N pages leaves exactly N pages free:
that is how an operation is made to fail at its second or third write, after
the first one went through, which only the transaction rollback can undo.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.live.server import LiveServer
from tests.reliability.conftest import Record
from valhalla_gov.audit.service import verify_chain
from valhalla_gov.compose import open_json

pytestmark = [pytest.mark.reliability, pytest.mark.live]

PAGE = 4096
# 9,000 three-byte characters: under the 10,000-character cap, 27 KB on disk.
LONG = "€" * 9000


def fill(directory: Path) -> Path:
    """Write a filler file in whole pages until the file system is full."""
    filler = directory / "filler.bin"
    block = b"\0" * PAGE
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while True:
            os.write(fd, block)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return filler


def snapshot(data_dir: Path) -> dict[str, bytes]:
    """Every file's bytes. Readiness probe files are left out: see
    test_a_failed_readiness_probe_leaves_no_file_behind."""
    return {
        p.name: p.read_bytes()
        for p in sorted(data_dir.iterdir())
        if p.is_file() and not p.name.startswith(".probe.")
    }


def assert_chain(data_dir: Path) -> None:
    result = verify_chain(store=open_json(data_dir))
    assert result.ok, result


def ok(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, f"{resp.request.method} {resp.request.url}: {resp.text}"
    body: dict[str, Any] = resp.json()
    return body


def refused(resp: httpx.Response, data_dir: Path, files: set[str]) -> str:
    """A 503 naming one of ``files`` in the data dir; returns the name."""
    where = f"{resp.request.method} {resp.request.url.path}"
    assert resp.status_code == 503, f"{where} on a full disk: {resp.status_code} {resp.text}"
    named = Path(resp.json()["file"])
    assert named.parent == data_dir, f"{where} named {named}"
    assert named.name in files, f"{where} named {named}"
    assert "no space left" in resp.json()["detail"], resp.text
    return named.name


@pytest.fixture
def served(small_tmpfs: Path) -> Iterator[tuple[httpx.Client, Path]]:
    data_dir = small_tmpfs / "data"
    with (
        LiveServer(data_dir, log_path=small_tmpfs.parent / "server.log") as server,
        server.client(timeout=30) as http,
    ):
        yield http, data_dir


READS = [
    "/core/go/session",
    "/core/go/summary",
    "/core/go/checklist",
    "/core/go/next_step",
    "/core/go/sessions",
    "/core/audit/events",
    "/core/cone/state",
    "/core/status/ryg",
    "/core/whoami",
    "/metrics",
]


def test_a_full_disk_answers_503_changes_nothing_and_recovers(
    served: tuple[httpx.Client, Path], small_tmpfs: Path, record_figures: Record
) -> None:
    http, data_dir = served
    ok(http.post("/core/cone/state", json={"band": "B", "reason": "before"}))
    ok(http.post("/core/go/start_session", json={"notes": "first"}))
    ok(http.post("/core/go/complete", json={"step_id": "preflight_view_dashboard"}))
    ok(http.post("/core/go/end_session", json={"notes": "first done"}))
    active = ok(http.post("/core/go/start_session", json={"notes": "second"}))
    ok(http.get("/core/cone/decide", params={"engine": "storage_units", "action": "run"}))
    assert http.get("/core/readyz").status_code == 200
    before = snapshot(data_dir)
    refusals: dict[str, str] = {}

    filler = fill(small_tmpfs)
    writes: list[tuple[str, dict[str, Any], set[str]]] = [
        ("/core/go/end_session", {"notes": "x"}, {"go_session_history.jsonl", "go_session.json"}),
        # Not a step blocked while health is red (a full disk makes it red): that is a 409.
        (
            "/core/go/complete",
            {"step_id": "preflight_view_dashboard", "notes": "x"},
            {"go_progress.json"},
        ),
        ("/core/cone/state", {"band": "C", "reason": "x"}, {"cone_state.json"}),
    ]
    for path, body, files in writes:
        refusals[path] = refused(http.post(path, json=body), data_dir, files)
        assert snapshot(data_dir) == before, f"{path} changed a file on a full disk"
        assert_chain(data_dir)
    # A start while one is active writes nothing: still the plain 409.
    conflict = http.post("/core/go/start_session", json={"notes": "x"})
    assert conflict.status_code == 409
    assert conflict.json()["session"] == active
    for path in READS:
        assert http.get(path).status_code == 200, f"GET {path} on a full disk"
    assert ok(http.get("/core/audit/verify"))["ok"] is True
    ready = http.get("/core/readyz")
    assert ready.status_code == 503, ready.text
    assert "not writable" in ready.text
    assert snapshot(data_dir) == before
    assert_chain(data_dir)

    filler.unlink()  # space is back: no restart, no manual step
    assert http.get("/core/readyz").status_code == 200
    ended = ok(http.post("/core/go/end_session", json={"notes": "second done"}))
    assert ended["id"] == active["id"]
    assert ended["end_notes"] == "second done"
    ok(http.post("/core/go/complete", json={"step_id": "preflight_view_dashboard", "notes": "y"}))
    ok(http.post("/core/cone/state", json={"band": "C", "reason": "after"}))

    # Full again with no session active: now the start is the write refused.
    before = snapshot(data_dir)
    filler = fill(small_tmpfs)
    refusals["/core/go/start_session"] = refused(
        http.post("/core/go/start_session", json={"notes": "x"}), data_dir, {"go_session.json"}
    )
    assert snapshot(data_dir) == before
    # Ending the already ended session writes nothing: it comes back unchanged.
    assert ok(http.post("/core/go/end_session", json={"notes": "x"})) == ended
    assert_chain(data_dir)
    filler.unlink()
    third = ok(http.post("/core/go/start_session", json={"notes": "third"}))
    assert ok(http.get("/core/go/session"))["id"] == third["id"]
    history = ok(http.get("/core/go/sessions"))["items"]
    assert [s["id"] for s in history[:1]] == [active["id"]]
    assert http.get("/core/readyz").status_code == 200
    assert ok(http.get("/core/audit/verify"))["ok"] is True
    assert_chain(data_dir)
    record_figures("disk_full", {"refused_with_file": refusals})


def _fails_half_way(
    small_tmpfs: Path,
    data_dir: Path,
    send: Callable[[], httpx.Response],
    first: str,
    later: set[str],
) -> dict[str, Any]:
    """Give ``send`` 0, 1, 2 ... free pages until it succeeds. Every failure
    must leave every file as it was, whichever write failed; at least one must
    have failed after ``first`` was written (at one of ``later``)."""
    files = {first, *later}
    before = snapshot(data_dir)
    filler = fill(small_tmpfs)
    full = filler.stat().st_size
    failed_at: dict[int, str] = {}
    try:
        for pages in range(min(full // PAGE, 64) + 1):
            os.truncate(filler, full - pages * PAGE)
            resp = send()
            if resp.status_code == 200:
                break
            failed_at[pages] = refused(resp, data_dir, files)
            assert snapshot(data_dir) == before, (
                f"{resp.request.url.path} with {pages} free pages failed at "
                f"{failed_at[pages]} and left a change behind"
            )
            assert_chain(data_dir)
        else:
            raise AssertionError(f"never succeeded with up to {pages} free pages: {failed_at}")
    finally:
        filler.unlink()
    assert_chain(data_dir)
    assert first in failed_at.values(), f"no fill level made the first write fail: {failed_at}"
    assert later & set(failed_at.values()), (
        f"no fill level made a write after {first} fail: {failed_at}"
    )
    by_file: dict[str, list[int]] = {}
    for free, name in failed_at.items():
        by_file.setdefault(name, []).append(free)
    return {
        "failed_at_file_with_free_pages": {
            name: f"{min(free)}-{max(free)}" for name, free in by_file.items()
        },
        "succeeded_with_free_pages": pages,
    }


def test_a_write_failing_half_way_is_taken_back(
    served: tuple[httpx.Client, Path], small_tmpfs: Path, record_figures: Record
) -> None:
    """The session document fits, the audit line does not: the document is put
    back byte for byte (the JSON transaction's rollback), and so on for every
    write of start, complete and cone set."""
    http, data_dir = served
    ok(http.post("/core/go/start_session", json={"notes": "short"}))
    ok(http.post("/core/go/end_session", json={"notes": "short"}))
    figures: dict[str, Any] = {}

    figures["start_session"] = _fails_half_way(
        small_tmpfs,
        data_dir,
        lambda: http.post("/core/go/start_session", json={"notes": LONG}),
        "go_session.json",
        {"audit.log"},
    )
    figures["complete"] = _fails_half_way(
        small_tmpfs,
        data_dir,
        lambda: http.post(
            "/core/go/complete", json={"step_id": "preflight_view_dashboard", "notes": LONG}
        ),
        "go_progress.json",
        {"go_session.json", "audit.log"},
    )
    figures["cone_state"] = _fails_half_way(
        small_tmpfs,
        data_dir,
        lambda: http.post("/core/cone/state", json={"band": "C", "reason": LONG}),
        "cone_state.json",
        {"audit.log"},
    )
    session = ok(http.get("/core/go/session"))
    assert session["notes"] == LONG
    assert session["steps_completed"] == ["preflight_view_dashboard"]
    assert ok(http.get("/core/cone/state"))["reason"] == LONG
    assert ok(http.get("/core/audit/verify"))["ok"] is True
    record_figures("disk_full_half_way", figures)


def test_a_failed_readiness_probe_leaves_no_file_behind(
    served: tuple[httpx.Client, Path], small_tmpfs: Path
) -> None:
    http, data_dir = served
    ok(http.post("/core/cone/state", json={"band": "B", "reason": "before"}))
    names = sorted(p.name for p in data_dir.iterdir())
    filler = fill(small_tmpfs)
    try:
        assert http.get("/core/readyz").status_code == 503
        assert sorted(p.name for p in data_dir.iterdir()) == names
    finally:
        filler.unlink()
