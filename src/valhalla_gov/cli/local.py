"""Local mode: a command on the data dir (or the configured database), in
this process.

A local command builds the server's own app on the settings and sends it
real HTTP requests over an in-process transport (:mod:`.inprocess`), so it
runs the very routes, validation, error mapping and audit a server runs,
under the same store and locks. The operator at the data dir is the owner,
as ``local``: no token and no rate limit (those protect a server from its
clients; whoever can run this can already write the files).

One narrow exception, :data:`DIRECT_READS`: a GET that a command answers
from the feature's own read function, the one the route calls, without
building the app (importing FastAPI alone takes longer than a
``valhalla go status`` should). Its errors become the same answer the app
would send, so :func:`.service.failure` still maps every error.

Nothing here creates a data dir: only ``valhalla init`` and ``valhalla serve``
do, so a typo in ``--data-dir`` is an error, never a new empty world.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .service import USAGE, CliError, DirectReply, Service

if TYPE_CHECKING:
    import httpx2 as httpx
    from pydantic import BaseModel

    from ..settings import Settings
    from ..storage.protocol import Schema, Store


def load_settings(data_dir: Path | None, *, flags: Mapping[str, object] | None = None) -> Settings:
    """The settings, or a :class:`CliError` (exit code 2) in one line naming
    the refused setting. ``flags``: values given by command-line flags, by
    flag name (``{"--log-level": "loud"}``), named as such when refused."""
    from pydantic import ValidationError

    from ..settings import Settings, explain

    given = dict(flags or {})
    if data_dir is not None:
        given["--data-dir"] = data_dir
    by_field = {flag.lstrip("-").replace("-", "_"): value for flag, value in given.items()}
    try:
        return Settings(**by_field)  # type: ignore[arg-type]
    except ValidationError as exc:
        names = {flag.lstrip("-").replace("-", "_"): flag for flag in given}
        raise CliError(f"error: bad setting: {explain(exc, flags=names)}", USAGE) from None


def missing_data_dir(path: Path, flag: bool) -> CliError:
    """The refusal for a data dir that is not there, with the ways out."""
    given = "--data-dir" if flag else "$VALHALLA_DATA_DIR (or ./data)"
    return CliError(
        f"error: no data dir at {path.resolve()} (from {given}). Pass the data dir your "
        f"server uses (--data-dir DIR, or --url to reach the server), or create it with "
        f"`valhalla init {path}`"
    )


def check_data_dir(settings: Settings, *, flag: bool) -> None:
    """Refuse a data dir that does not exist (a local command never creates one)."""
    if not settings.database_url:
        check_dir(settings.data_dir, flag=flag)


def check_dir(path: Path, *, flag: bool) -> None:
    if not path.exists():
        raise missing_data_dir(path, flag)
    if not path.is_dir():
        raise CliError(f"error: the data dir {path.resolve()} is not a directory")


# The fields of Settings, named here so that deciding on direct reads imports
# no pydantic-settings (tests/cli/test_direct_reads.py keeps the two equal).
SETTING_FIELDS = frozenset(
    [
        "allowed_hosts",
        "bind_host",
        "body_timeout_seconds",
        "canon_file",
        "cors_origins",
        "data_dir",
        "database_pool_size",
        "database_url",
        "events_keepalive_seconds",
        "events_max_streams",
        "events_poll_seconds",
        "header_timeout_seconds",
        "log_format",
        "log_level",
        "max_body_bytes",
        "max_connections",
        "max_connections_per_client",
        "max_open_connections",
        "playbook_file",
        "rate_limit_dir",
        "rate_limit_fail_open",
        "rate_limit_start_session",
        "rate_limit_writes",
        "redis_url",
        "stall_grace_seconds",
        "trusted_proxies",
        "webhook_connect_timeout",
        "webhook_give_up_seconds",
        "webhook_key",
        "webhook_key_file",
        "webhook_lease_seconds",
        "webhook_max_response_bytes",
        "webhook_poll_seconds",
        "webhook_read_timeout",
        "webhook_retry_base_seconds",
        "webhook_retry_max_seconds",
        "webhook_worker",
        "write_timeout_seconds",
    ]
)


def plain_data_dir(data_dir: Path | None) -> Path | None:
    """The data dir when the environment sets no setting but the data dir:
    then every other setting is its default (no database, canon or playbook
    file; all valid), and building :class:`Settings` would say nothing more
    (pydantic-settings' imports alone cost ~0.15 s). None when any other
    setting is set: the settings decide."""
    env_dir: str | None = None
    for name, value in os.environ.items():
        key = name.lower()  # pydantic-settings matches names in any case
        if not key.startswith("valhalla_") or key[9:] not in SETTING_FIELDS:
            continue
        if key == "valhalla_data_dir" and name == "VALHALLA_DATA_DIR" and value:
            env_dir = value
            continue
        return None
    if data_dir is not None:
        return data_dir
    return Path(env_dir) if env_dir is not None else Path("data")


def describe(settings: Settings) -> str:
    """The data dir or the database (password hidden), for messages."""
    if settings.database_url:
        from ..storage.sql_backend import redact

        return redact(settings.database_url)
    return str(settings.data_dir)


def _go_session(store: Store) -> BaseModel:
    from ..go.session_reads import get_session

    return get_session(store=store)


def _audit_verify(store: Store) -> BaseModel:
    from ..audit.service import verify_chain

    # A walk of the whole log: building the app would cost about as much as
    # hashing 500,000 lines.
    return verify_chain(store=store)


# GET path (without a query) -> the read its route serves, given the store.
# Only reads that need nothing from the app's start-up belong here.
DIRECT_READS: dict[str, Callable[[Store], BaseModel]] = {
    "/core/go/session": _go_session,
    "/core/audit/verify": _audit_verify,
}
# The ones also answered directly on a database (given by its URL alone).
SQL_DIRECT_READS = frozenset(["/core/audit/verify"])


class DirectReads:
    """Answers the paths of :data:`DIRECT_READS` on a JSON data dir (or those
    of :data:`SQL_DIRECT_READS` on a database); every other request goes to
    the app."""

    def __init__(self, data_dir: Path | None = None, *, database_url: str | None = None) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self._store: Store | None = None

    def __call__(self, path: str) -> DirectReply | None:
        from ..errors import storage_unavailable
        from ..storage.errors import StorageError

        read = DIRECT_READS.get(path)
        if read is None or (self.database_url is not None and path not in SQL_DIRECT_READS):
            return None
        try:
            model = read(self._open())
        except StorageError as exc:
            return DirectReply(503, storage_unavailable(exc))
        return DirectReply(200, model.model_dump(mode="json"))

    def _open(self) -> Store:
        if self._store is None:
            self._store = self.open_store(check=True)
        return self._store

    def open_store(self, *, check: bool = False) -> Store:
        """A store on the data dir or database (``check``: its schema too, as
        the app checks it at start-up)."""
        from ..audit.store import SCHEMA as AUDIT

        if self.database_url is not None:
            return _open_sql(self.database_url, AUDIT, check=check)
        from ..go.session_store import SCHEMA as SESSIONS
        from ..storage.json_backend import JsonStore

        assert self.data_dir is not None
        # The documents and logs these reads touch; a read needs no more.
        return JsonStore(self.data_dir, SESSIONS + AUDIT, create=False)


def _open_sql(url: str, schema: Schema, *, check: bool) -> Store:
    """The SQL store, refused as the app's start-up refuses it."""
    from sqlalchemy.exc import SQLAlchemyError

    from ..migrations import HEAD, VERSIONS_DIR
    from ..storage.sql_backend import Migrations, SchemaOutOfDateError, SqlStore, redact

    try:
        return SqlStore(
            url, Migrations(schema, VERSIONS_DIR, head=HEAD), check_schema=check, pool_size=1
        )
    except (SchemaOutOfDateError, SQLAlchemyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CliError(f"error: {redact(url)}: {first}") from None


def plain_database_url(data_dir: Path | None) -> str | None:
    """The database URL when the environment sets it and no other setting
    (and no --data-dir is given): every other setting is then its default,
    as :func:`plain_data_dir` says for a data dir. None otherwise."""
    if data_dir is not None:
        return None
    url: str | None = None
    for name, value in os.environ.items():
        key = name.lower()
        if not key.startswith("valhalla_") or key[9:] not in SETTING_FIELDS:
            continue
        if name == "VALHALLA_DATABASE_URL" and value:
            url = value
            continue
        return None
    return url


def local_service(data_dir: Path | None) -> Service:
    flag = data_dir is not None
    path = plain_data_dir(data_dir)
    if path is not None:
        check_dir(path, flag=flag)

        def connect() -> httpx.Client:
            from .inprocess import app_client

            return app_client(load_settings(data_dir))

        return Service(connect, where=str(path), local=True, direct=DirectReads(path))
    url = plain_database_url(data_dir)
    if url is not None:
        from ..database_url import BadDatabaseUrl, database_url
        from ..storage.sql_backend import redact

        try:
            url = database_url(url)
        except BadDatabaseUrl as exc:
            said = f"{exc} (for example VALHALLA_DATABASE_URL={exc.example})"
            raise CliError(f"error: bad setting: VALHALLA_DATABASE_URL: {said}", USAGE) from None

        def connect_sql() -> httpx.Client:
            from .inprocess import app_client

            return app_client(load_settings(data_dir))

        direct = DirectReads(database_url=url)
        return Service(connect_sql, where=redact(url), local=True, direct=direct)
    settings = load_settings(data_dir)
    check_data_dir(settings, flag=flag)
    from .inprocess import app_client

    return Service(lambda: app_client(settings), where=describe(settings), local=True)
