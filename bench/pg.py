"""PostgreSQL for the benchmarks: scratch databases, a fast bulk load, cleanup.

The benchmarks never touch a database they did not create: every database
here is created with a marker comment, and one without it is refused. From
``--database-url`` (default ``DEFAULT_URL``) the scripts derive:

- ``<name>_empty``: schema dropped, recreated and upgraded on every run;
- ``<name>_<N>``: N ended sessions and N chained audit lines, loaded once with
  COPY from the cached JSON fill (``bench.fill``) and kept between runs. A
  marker table records what was loaded; a benchmark that wrote into it calls
  :func:`restore`, which deletes every row past the load.

The loaded rows are the ones ``SqlStore`` writes: ``go_sessions`` rows with the
history line as body, ``log_records`` rows with ``kind`` = the audit event,
``ts_utc`` = the record's and the audit line as body (both already canonical
JSON). A sample is checked against ``sql_backend``'s own row builders, and
the newest pages must read the same through both backends.

    python -m bench pg --entries 1000000 --verify   # load once, walk the chain
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from bench.fill import DEFAULT_ENTRIES, ensure_filled
from valhalla_gov.audit.service import query_events, verify_chain
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json, open_sql
from valhalla_gov.compose import upgrade_database as upgrade
from valhalla_gov.go.session_service import list_sessions
from valhalla_gov.go.session_store import HISTORY
from valhalla_gov.go.tables import SESSIONS
from valhalla_gov.storage.encoding import canonical_json
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.sql_placement import LogRows

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/valhalla_bench"
MARK = "valhalla bench scratch database (bench/pg.py)"
PROTECTED = frozenset({"postgres", "template0", "template1", "test"})
# Bump when the loaded rows change, so stale databases are reloaded.
LOAD_VERSION = 1
_SAMPLE_EVERY = 49_999
_SESSION_COLUMNS = ("id", "active", "started_at_utc", "ended_at_utc", "body")
_LOG_COLUMNS = ("log", "kind", "ts_utc", "body")


def derived_url(base_url: str, suffix: str) -> str:
    """The scratch database ``<name>_<suffix>`` on the same server."""
    url = make_url(base_url)
    if url.get_backend_name() != "postgresql":
        raise SystemExit(f"--database-url must be a postgresql URL, not {url.drivername}")
    name = f"{url.database}_{suffix}"
    if not url.database or name in PROTECTED:
        raise SystemExit(f"refusing database name {name!r}")
    return url.set(database=name).render_as_string(hide_password=False)


def libpq(url: str) -> str:
    """The SQLAlchemy URL as a libpq URI for psycopg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def db_name(url: str) -> str:
    name = make_url(url).database
    if not name:
        raise SystemExit(f"no database name in {url}")
    return name


def admin_url(url: str) -> str:
    """The same server's maintenance database (never written to)."""
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def ensure_database(url: str) -> None:
    """Create the scratch database if missing; refuse one that is not ours."""
    name = db_name(url)
    if name in PROTECTED:
        raise SystemExit(f"refusing to use database {name!r}")
    with psycopg.connect(libpq(admin_url(url)), autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (name,),
        ).fetchone()
        if row is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(name), sql.Literal(MARK)
                )
            )
        elif row[0] != MARK:
            raise SystemExit(
                f"database {name!r} exists and was not created by the benchmarks; pick another"
                " --database-url"
            )


def reset_schema(url: str) -> None:
    """Drop and recreate the public schema, then ``upgrade`` (empty tables)."""
    ensure_database(url)
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
    upgrade(url)


def empty_database(base_url: str, suffix: str = "empty") -> str:
    """A scratch database with the schema and no rows (``<name>_<suffix>``)."""
    url = derived_url(base_url, suffix)
    reset_schema(url)
    return url


@dataclass(frozen=True)
class Marker:
    entries: int
    max_log_id: int
    max_session_id: str
    load_seconds: float


def _marker(conn: psycopg.Connection[Any]) -> Marker | None:
    exists = conn.execute("SELECT to_regclass('public.bench_fill')").fetchone()
    if exists is None or exists[0] is None:
        return None
    row = conn.execute(
        "SELECT version, entries, max_log_id, max_session_id, load_seconds FROM bench_fill"
    ).fetchone()
    if row is None or row[0] != LOAD_VERSION:
        return None
    return Marker(int(row[1]), int(row[2]), str(row[3]), float(row[4]))


def restore(url: str) -> int:
    """Delete every row a benchmark added after the load; returns how many."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        marker = _marker(conn)
        if marker is None:
            return 0
        removed = 0
        for query, params in (
            ("DELETE FROM go_sessions WHERE id > %s", (marker.max_session_id,)),
            ("DELETE FROM log_records WHERE id > %s", (marker.max_log_id,)),
            ("DELETE FROM documents", ()),  # the load writes none
        ):
            removed += conn.execute(query, params).rowcount
        conn.execute("DROP TABLE IF EXISTS bench_insert")
        if removed:
            # autovacuum may be off (it is on the test machine): clear the dead rows.
            conn.execute("VACUUM (ANALYZE) go_sessions, log_records, documents")
        return removed


def _one(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {query}")
    return row[0]


def _counts(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    sessions = _one(conn, "SELECT count(*) FROM go_sessions")
    audit = _one(conn, "SELECT count(*) FROM log_records WHERE log = %s", (AUDIT_LOG.name,))
    return int(sessions), int(audit)


def ensure_filled_pg(base_url: str, entries: int, *, verify: bool = False) -> str:
    """The URL of the database holding ``entries`` sessions and audit lines,
    loaded if needed (and restored to the load if a benchmark wrote into it)."""
    url = derived_url(base_url, str(entries))
    ensure_database(url)
    restore(url)
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        marker = _marker(conn)
        ok = marker is not None and marker.entries == entries and _counts(conn) == (entries,) * 2
    if not ok:
        load(url, ensure_filled(entries), entries)
    if verify:
        verify_loaded(url, entries)
    return url


def load(url: str, data_dir: Path, entries: int) -> float:
    """Bulk-load a filled JSON data dir into a freshly reset database."""
    print(f"loading {data_dir} into {db_name(url)} with COPY (cached for later runs) ...")
    reset_schema(url)
    began = time.perf_counter()
    json_store = open_json(data_dir)
    history = json_store.log_path(HISTORY)
    audit = json_store.log_path(AUDIT_LOG)
    with psycopg.connect(libpq(url)) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY go_sessions ({', '.join(_SESSION_COLUMNS)}) FROM STDIN") as copy,
            open(history, encoding="utf-8") as lines,
        ):
            for i, line in enumerate(lines):
                body = line.rstrip("\n")
                record = json.loads(body)
                row = (
                    record["id"],
                    False,
                    record["started_at_utc"],
                    record["ended_at_utc"],
                    body,
                )
                if i % _SAMPLE_EVERY == 0:
                    _check_row(SESSIONS.row_of(record), row, _SESSION_COLUMNS)
                copy.write_row(row)
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY log_records ({', '.join(_LOG_COLUMNS)}) FROM STDIN") as copy,
            open(audit, encoding="utf-8") as lines,
        ):
            for i, line in enumerate(lines):
                body = line.rstrip("\n")
                record = json.loads(body)
                row2 = (AUDIT_LOG.name, record["event"], record["ts_utc"], body)
                if i % _SAMPLE_EVERY == 0:
                    _check_row(LogRows(AUDIT_LOG).row(record), row2, _LOG_COLUMNS)
                copy.write_row(row2)
        conn.commit()
    copied = time.perf_counter() - began
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) go_sessions, log_records, documents")
        # Write the load out now, not during a timed run (the default
        # checkpoint_timeout is 5 minutes).
        conn.execute("CHECKPOINT")
        seconds = time.perf_counter() - began
        max_log = _one(conn, "SELECT coalesce(max(id), 0) FROM log_records")
        max_session = _one(conn, "SELECT coalesce(max(id), '') FROM go_sessions")
        conn.execute(
            "CREATE TABLE bench_fill (version int, entries bigint, max_log_id bigint,"
            " max_session_id text, load_seconds double precision)"
        )
        conn.execute(
            "INSERT INTO bench_fill VALUES (%s, %s, %s, %s, %s)",
            (LOAD_VERSION, entries, max_log, max_session, seconds),
        )
        if _counts(conn) != (entries, entries):
            raise RuntimeError(f"loaded {_counts(conn)} rows, expected {entries} of each")
    _same_pages(json_store, url)
    print(
        f"loaded {entries:,} sessions + {entries:,} audit lines in {copied:.1f} s"
        f" (COPY), {seconds:.1f} s with VACUUM ANALYZE and CHECKPOINT"
    )
    return seconds


def _check_row(expected: dict[str, Any], row: tuple[Any, ...], keys: tuple[str, ...]) -> None:
    """The COPY row must be what SqlStore itself would insert."""
    values = tuple(expected[k] for k in keys)
    if values != row:
        raise RuntimeError(f"bulk row differs from SqlStore's: {row!r:.200} vs {values!r:.200}")
    if canonical_json(json.loads(row[-1])) != row[-1]:
        raise RuntimeError("a body is not canonical JSON")


def _same_pages(json_store: JsonStore, url: str) -> None:
    """The newest pages read the same through both backends."""
    sql_store = open_sql(url)
    try:
        for read in (
            lambda s: list_sessions(store=s, limit=50).items,
            lambda s: query_events(store=s, limit=100).items,
            lambda s: query_events(store=s, limit=100, event="GO_SESSION_END").items,
        ):
            if read(json_store) != read(sql_store):
                raise RuntimeError("a page differs between the JSON dir and the database")
    finally:
        sql_store.close()


def verify_loaded(url: str, entries: int) -> None:
    store = open_sql(url)
    try:
        began = time.perf_counter()
        result = verify_chain(store=store)
        if not result.ok or result.events != entries:
            raise RuntimeError(f"audit chain does not verify in {db_name(url)}: {result}")
        print(
            f"verify_chain on {db_name(url)}: ok, {result.events:,} events"
            f" in {time.perf_counter() - began:.1f} s"
        )
    finally:
        store.close()


def _postmaster() -> int | None:
    """The PostgreSQL server process, if it runs on this machine."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm, rest = stat.split("(", 1)[1].rsplit(")", 1)
        if comm == "postgres" and rest.split()[1] == "1":
            return int(entry.name)
    return None


def _stat_fields(pid: int | str) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


class PostgresCpu:
    """CPU seconds used by the local PostgreSQL: the postmaster, its live
    children and the ones it has reaped (backends that closed). Counts every
    database on the server, so other people's tests add to it."""

    def __init__(self) -> None:
        self.pid = _postmaster()
        self.tick = os.sysconf("SC_CLK_TCK")

    def seconds(self) -> float | None:
        if self.pid is None:
            return None
        try:
            own = _stat_fields(self.pid)
        except OSError:
            return None
        # utime, stime, cutime, cstime: fields 14-17 of proc(5).
        ticks = sum(int(v) for v in own[11:15])
        parent = str(self.pid)
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fields = _stat_fields(entry.name)
            except OSError:
                continue
            if fields[1] == parent:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / self.tick


def server_settings(url: str) -> dict[str, str]:
    """The settings that decide what a commit and a read cost."""
    names = (
        "server_version",
        "shared_buffers",
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
        "full_page_writes",
        "autovacuum",
        "jit",
    )
    settings: dict[str, str] = {}
    with psycopg.connect(libpq(admin_url(url)), autocommit=True) as conn:
        for name in names:
            row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            settings[name] = str(row[0]) if row else "?"
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench pg", description="Load (once) and check a bench database."
    )
    parser.add_argument("--database-url", default=DEFAULT_URL, help="server and name prefix")
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES, help="N (default 1e6)")
    parser.add_argument("--verify", action="store_true", help="verify_chain over the loaded log")
    args = parser.parse_args(argv)
    if args.entries < 1:
        parser.error("--entries must be >= 1")
    print(ensure_filled_pg(args.database_url, args.entries, verify=args.verify))
    return 0
