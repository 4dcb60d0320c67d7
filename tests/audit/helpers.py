"""Building and tampering with audit logs in tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy

from tests.conftest import STORE_URL_FILE, FakeClock
from valhalla_gov.audit.models import AuditEvent
from valhalla_gov.audit.service import GENESIS, chain_hash, log_event
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.storage.encoding import canonical_json
from valhalla_gov.storage.protocol import Store
from valhalla_gov.timeutil import Clock

LEGACY_LINES = [
    b'{"ts_utc": "2025-12-01T10:00:00.000000Z", "event": "cone_set", "payload": {"band": "B"}}',
    b'{"ts_utc": "2025-12-01T10:05:00.123456", "event": "go_start", "payload": {"notes": null}}',
    b'{"ts_utc": "2025-12-01T10:09:00.000000Z", "event": "go_end", "payload": {"notes": "ok"}}',
]


def record_event(
    *, store: Store, event: str, payload: dict[str, Any], actor: str, clock: Clock
) -> AuditEvent:
    """One audited event in a transaction of its own."""
    with store.transaction() as txn:
        return log_event(txn, event=event, payload=payload, actor=actor, clock=clock)


def record_events(store: Store, clock: FakeClock, count: int, *, actor: str = "op") -> None:
    """``count`` events one minute apart: e0, e1, ... with payload {"i": n}."""
    for n in range(count):
        record_event(store=store, event=f"e{n % 3}", payload={"i": n}, actor=actor, clock=clock)
        clock.advance(minutes=1)


def chained(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if "hash" in r]


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def write_lines(path: Path, new_lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in new_lines))


def edit_line(path: Path, index: int, change: Callable[[bytes], bytes]) -> None:
    all_lines = lines(path)
    before = all_lines[index]
    all_lines[index] = change(before)
    assert all_lines[index] != before, "the edit changed nothing"
    write_lines(path, all_lines)


def without_keys(line: bytes, *keys: str) -> bytes:
    record = json.loads(line)
    for key in keys:
        del record[key]
    return canonical_json(record).encode()


def synthetic_chain(count: int, *, start: datetime | None = None) -> list[bytes]:
    """A valid chain of ``count`` lines built by hand, for logs too long to
    write one fsync'd append at a time. verify_chain is asserted ok on it."""
    moment = start or datetime(2026, 1, 1, tzinfo=UTC)
    prev = GENESIS
    out = []
    for seq in range(1, count + 1):
        body = {
            "ts_utc": (moment + timedelta(seconds=seq)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "event": "tick",
            "payload": {"i": seq},
            "seq": seq,
            "actor": "bulk",
            "prev": prev,
        }
        prev = chain_hash(prev, body)
        out.append(canonical_json({**body, "hash": prev}).encode())
    return out


def scan_records(store: Store) -> list[dict[str, Any]]:
    return [entry.record for entry in store.scan_log_forward(AUDIT_LOG)]


def store_lines(backend: str, tmp_path: Path, texts: list[bytes]) -> None:
    """Replace the stored audit log by ``texts``, byte for byte on JSON (one
    line each), as the rows' bodies on SQL (read as UTF-8, a bad byte and NUL,
    which a text column cannot hold, replaced): what a hand edit or an older
    version could have left there. The ``kind`` column is what a writer would
    have put; the store generation is bumped, as any change outside Valhalla
    must, so running stores see it."""
    if backend == "json":
        path = tmp_path / "data" / AUDIT_LOG.file
        path.write_bytes(b"".join(text + b"\n" for text in texts))
        return
    engine = sqlalchemy.create_engine((tmp_path / STORE_URL_FILE).read_text())
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("DELETE FROM log_records WHERE log = 'audit'"))
            for text in texts:
                body = text.decode("utf-8", "replace").replace("\x00", "\ufffd")
                conn.execute(
                    sqlalchemy.text(
                        "INSERT INTO log_records (log, kind, body) VALUES ('audit', :kind, :body)"
                    ),
                    {"kind": _kind(body), "body": body},
                )
            conn.execute(sqlalchemy.text("UPDATE store_generation SET n = n + 1"))
    finally:
        engine.dispose()


def _kind(body: str) -> str | None:
    try:
        record = json.loads(body)
    except (ValueError, RecursionError):
        return None
    event = record.get("event") if isinstance(record, dict) else None
    if not isinstance(event, str) or not event.isprintable():
        return None  # no column holds a lone surrogate: a mismatch, as a hand edit leaves
    return event[:200]
