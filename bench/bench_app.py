"""The real app plus a bare route, so both are measured in one server process.

``uvicorn bench.bench_app:create_bench_app --factory`` serves it; settings come
from the environment (``VALHALLA_DATA_DIR`` or ``VALHALLA_DATABASE_URL``)
exactly as in ``valhalla serve``. On the SQL backend ``/bench/info`` also
counts the database work (statements, pool checkouts, new connections, and
the generation reads the server's event loop sends on its own connection),
so the bench can report it per request.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event

from bench.framework_app import BODY as FRAMEWORK_BODY
from valhalla_gov.app import create_app, freeze_start_up
from valhalla_gov.settings import Settings
from valhalla_gov.storage.sql_backend import SqlStore

# The framework-only app's constant (the size class of the inactive
# GoSession, 263 bytes of JSON), so the routes differ in work, not in bytes.
BARE_BODY: dict[str, Any] = {**FRAMEWORK_BODY, "route": "bench-bare"}


def _server_stack() -> dict[str, str]:
    """What this server actually runs on (the bench prints it)."""
    loop = type(asyncio.get_running_loop())
    if "uvicorn.protocols.http.httptools_impl" in sys.modules:
        http = "httptools"
    elif "uvicorn.protocols.http.h11_impl" in sys.modules:
        http = "h11"
    else:
        http = "unknown"
    return {
        "loop": f"{loop.__module__}.{loop.__qualname__}",
        "http": http,
        "python": sys.version.split()[0],
    }


def _count_sql(store: SqlStore) -> dict[str, int]:
    """Counters bumped by SQLAlchemy events (a few hundred ns per event)."""
    counts = {"statements": 0, "checkouts": 0, "connects": 0}

    def bump(name: str) -> Any:
        def listener(*_: Any) -> None:
            counts[name] += 1

        return listener

    event.listen(store.engine, "before_cursor_execute", bump("statements"))
    event.listen(store.engine, "checkout", bump("checkouts"))
    event.listen(store.engine, "connect", bump("connects"))
    return counts


def create_bench_app() -> FastAPI:
    app = create_app(Settings())
    store = app.state.ctx.store
    sql_counts = _count_sql(store) if isinstance(store, SqlStore) else None

    # The baseline: the least a FastAPI route can do (async, so no thread hop,
    # no dependencies, no file access). Idiomatic return annotation.
    @app.get("/bench/bare", include_in_schema=False)
    async def bare() -> dict[str, Any]:
        return BARE_BODY

    # Not measured: lets the bench report uvloop/httptools as really in use.
    @app.get("/bench/info", include_in_schema=False)
    async def info() -> dict[str, Any]:
        return {**_server_stack(), "store": store.describe(), "sql": sql_counts}

    freeze_start_up()  # as valhalla serve's factory does
    return app
