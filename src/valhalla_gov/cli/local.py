"""Local mode: a command on the data dir (or the configured database), in
this process.

A local command calls the feature service the API route calls, on the same
store and locks as a server (:mod:`.direct`): the same rules, audit and
refusals, without importing FastAPI or building the app. The operator at the
data dir is the owner, as ``local``: no token and no rate limit (those
protect a server from its clients; whoever can run this can already write
the files). The few requests :mod:`.direct` does not answer go to the
server's own app, built in this process (:mod:`.inprocess`).

Nothing here creates a data dir: only ``valhalla init`` and ``valhalla serve``
do, so a typo in ``--data-dir`` is an error, never a new empty world.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .direct import Core, LocalConfig, answer
from .service import USAGE, CliError, DirectReply, Service

if TYPE_CHECKING:
    import httpx2 as httpx

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


# The fields of Settings, named here so that reading the local settings
# imports no pydantic-settings (tests/cli/test_direct.py keeps the two equal).
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


# The settings a local command reads (the rest are the server's: its
# address, limits, timeouts, webhook sender). When the environment sets no
# other, they are read here, without pydantic-settings (whose import alone
# costs about what a whole command should).
LOCAL_FIELDS = frozenset(["data_dir", "canon_file", "playbook_file", "log_level", "log_format"])
# settings.LOG_LEVELS, written out for the same reason (a test keeps them equal).
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def plain_config(data_dir: Path | None) -> LocalConfig | None:
    """The local settings when the environment sets none but those of
    :data:`LOCAL_FIELDS` (in any case, an empty value being unset, as
    pydantic-settings reads them), each valid; None otherwise, and the
    settings decide (and report what is wrong)."""
    found: dict[str, str] = {}
    for name, value in os.environ.items():
        key = name.lower()  # pydantic-settings matches names in any case
        if not key.startswith("valhalla_") or key[9:] not in SETTING_FIELDS or not value:
            continue
        if key[9:] not in LOCAL_FIELDS:
            return None
        found[key[9:]] = value
    level = found.get("log_level")
    if level is not None and level.strip().lower() not in LOG_LEVELS:
        return None
    if found.get("log_format", "auto") not in ("auto", "text", "json"):
        return None  # the settings say what is wrong with it
    canon, playbook = found.get("canon_file"), found.get("playbook_file")
    return LocalConfig(
        data_dir=data_dir if data_dir is not None else Path(found.get("data_dir", "data")),
        canon_file=Path(canon) if canon else None,
        playbook_file=Path(playbook) if playbook else None,
    )


def describe(settings: Settings) -> str:
    """The data dir or the database (password hidden), for messages."""
    if settings.database_url:
        from ..storage.sql_backend import redact

        return redact(settings.database_url)
    return str(settings.data_dir)


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


def store_opener(config: LocalConfig) -> Callable[[Schema], Store]:
    """Opens the data dir (never creating it) or the database (its schema
    checked, as the app checks it at start-up: against every declaration)."""

    def open_store(schema: Schema) -> Store:
        from .direct import full_schema

        if config.database_url:
            return _open_sql(config.database_url, full_schema(), check=True)
        from ..storage.errors import StorageError
        from ..storage.json_backend import JsonStore

        try:
            return JsonStore(config.data_dir, schema, create=False)
        except StorageError as exc:
            raise CliError(f"error: {exc}") from None

    return open_store


def local_service(data_dir: Path | None) -> Service:
    flag = data_dir is not None
    config = plain_config(data_dir)
    settings: Settings | None = None
    if config is None:
        settings = load_settings(data_dir)
        check_data_dir(settings, flag=flag)
        config = LocalConfig(
            data_dir=settings.data_dir,
            database_url=settings.database_url,
            canon_file=settings.canon_file,
            playbook_file=settings.playbook_file,
        )
        where = describe(settings)
    else:
        check_dir(config.data_dir, flag=flag)
        where = str(config.data_dir)
    core = Core(config, store_opener(config))

    def direct(
        method: str, path: str, params: dict[str, Any], body: dict[str, Any] | None
    ) -> DirectReply | None:
        return answer(core, method, path, params, body)

    def connect() -> httpx.Client:
        # Only for what the app alone answers (see direct.py).
        from .inprocess import app_client

        return app_client(settings or load_settings(data_dir))

    return Service(connect, where=where, local=True, direct=direct, on_close=core.close)
