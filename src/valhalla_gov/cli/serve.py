"""``valhalla serve`` and ``valhalla init``: the only commands that create a
data dir, and both say so. Both create the owner credential with it
(``owner.token`` in the data dir), and ``serve`` prints a sign-in link for
the page at every start."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .client import CliError, fail, plural, reported
from .service import USAGE

if TYPE_CHECKING:
    from ..auth.service import OwnerCredential
    from ..context import AppContext
    from ..settings import Settings
    from ..storage.protocol import Store

# Where a printed sign-in link points when the server listens on every
# address: the page opened on this machine.
LINK_HOST_FOR_WILDCARD = "127.0.0.1"


def init(
    data_dir: Annotated[
        Path | None,
        typer.Argument(
            metavar="DIR",
            help="The data dir to create (default: $VALHALLA_DATA_DIR or ./data).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create an empty data dir and its owner credential (a dir that exists is
    left as it is; its owner credential is created if it has none)."""
    from ..compose import open_json
    from ..errors import DomainError
    from ..storage.errors import StorageError
    from .local import load_settings

    with reported():  # a bad setting: one line, exit code 2
        settings = load_settings(data_dir)
    path = settings.data_dir
    if settings.database_url and data_dir is None:
        fail(
            CliError(
                "error: VALHALLA_DATABASE_URL is set, so there is no data dir to create; "
                "`valhalla db upgrade` prepares the database, and the first `valhalla serve` "
                "creates the owner credential"
            )
        )
    existed = path.is_dir()
    if not existed:
        _create(path)
    try:
        outcome = _owner_credential(open_json(path), path)
    except (StorageError, DomainError) as exc:
        fail(CliError(f"error: {_said(exc)}"))
    if existed:
        typer.echo(f"data dir {path.resolve()} exists; left as it is")
    else:
        typer.echo(f"created data dir {path.resolve()}")
    note = _credential_note(outcome, path)
    if note:
        typer.echo(note)


def _said(exc: Exception) -> str:
    from ..errors import DomainError

    return exc.detail if isinstance(exc, DomainError) else str(exc)


def _owner_credential(store: Store, data_dir: Path) -> OwnerCredential:
    from ..auth.service import ensure_owner_credential
    from ..storage.json_store import ensure_private_dir
    from ..timeutil import utc_now

    # On SQL the data dir holds only the credential: it must be as private.
    ensure_private_dir(data_dir)
    return ensure_owner_credential(store=store, data_dir=data_dir, clock=utc_now)


def _credential_note(outcome: OwnerCredential, data_dir: Path) -> str | None:
    """One line on the owner credential, when there is something to say."""
    from ..auth.owner_file import owner_file
    from ..auth.service import OwnerCredential

    path = owner_file(data_dir.resolve())
    if outcome is OwnerCredential.CREATED:
        return (
            f"created the owner credential {path} (readable by this account only): "
            "commands with --url on this machine use it; `valhalla serve` prints a sign-in "
            "link for the page"
        )
    if outcome is OwnerCredential.REGISTERED:
        return f"the owner credential is {path}"
    if outcome is OwnerCredential.ELSEWHERE:
        return (
            f"note: {path} is missing, so commands with --url here need --token; if it was "
            "deleted, `valhalla token rotate-owner` writes a new one (for a replica on another "
            "machine, copy the file from the first one)"
        )
    if outcome is OwnerCredential.MISMATCH:
        return (
            f"note: {path} is not the owner credential the store knows (rotated elsewhere?); "
            "`valhalla token rotate-owner` writes a new one"
        )
    return None


def _create(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # private, as the store wants
    except OSError as exc:
        fail(CliError(f"error: cannot create data dir {path}: {exc.strerror or exc}"))


def _port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails because something listens there."""
    import errno
    import socket

    if port == 0:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # The same option uvicorn sets: a port in TIME_WAIT is not "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _access(store: Store) -> str:
    from ..auth.service import list_tokens
    from ..storage.errors import StorageError

    try:
        tokens = list_tokens(store=store)
    except StorageError as exc:
        return f"tokens unreadable ({exc}); readiness is false"
    others = [t for t in tokens if t.kind != "owner_credential"]
    return f"every client needs a credential (the owner's and {plural(len(others), 'token')})"


def _start_credential(store: Store, data_dir: Path, created: bool) -> tuple[OwnerCredential, bool]:
    """The owner credential at serve's start (created if missing, a note if
    something is off), and whether this start is the first since an upgrade:
    data from before the credential, which ran in protected mode."""
    from ..auth.service import OwnerCredential
    from ..errors import DomainError
    from ..storage.errors import StorageError

    try:
        had_data = bool(not created and _has_history(store))
        outcome = _owner_credential(store, data_dir)
    except (StorageError, DomainError) as exc:
        fail(CliError(f"cannot start: {_said(exc)}"))
    note = _credential_note(outcome, data_dir)
    if note and not (created and outcome is OwnerCredential.CREATED):
        typer.echo(note, err=True)
    return outcome, outcome is OwnerCredential.CREATED and had_data


def _has_history(store: Store) -> bool:
    """Whether anything was ever audited (or a token made) in this store."""
    from ..audit.store import AUDIT_LOG
    from ..auth.service import list_tokens

    return bool(list_tokens(store=store)) or next(store.scan_log(AUDIT_LOG), None) is not None


def _binds_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address: for what serve warns about,
    never for who may do what."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def signin_link(host: str, port: int, code: str) -> str:
    """``http://HOST:PORT/#signin=CODE``: the code in the fragment, which a
    browser never sends to a server (nor to a proxy, nor into a log)."""
    shown = LINK_HOST_FOR_WILDCARD if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/#signin={code}"


def _print_signin(store: Store, host: str, port: int, upgraded: bool) -> None:
    from ..auth.service import LOCAL_ACTOR, SIGNIN_TTL, create_signin_code
    from ..timeutil import utc_now

    link = create_signin_code(store=store, actor=LOCAL_ACTOR, clock=utc_now)
    minutes = int(SIGNIN_TTL.total_seconds() // 60)
    if upgraded:
        typer.secho(
            "valhalla: what changed: an address no longer makes anyone the owner (there is "
            "no protected mode). The owner credential is now in the data dir: commands with "
            "--url on this machine use it by themselves, and the page signs in with the "
            "link below. Tokens you made keep working.",
            fg="yellow",
            err=True,
        )
    typer.echo(
        f"valhalla: sign in on the page with {signin_link(host, port, link.code)} "
        f"(works once, for {minutes} minutes; `valhalla token link` prints another)",
        err=True,
    )


def start_line(
    settings: Settings, *, host: str, port: int, workers: int, access: str, created: bool
) -> str:
    from .local import describe

    shown = f"[{host}]" if ":" in host else host
    where = (
        f"database {describe(settings)}"
        if settings.database_url
        else f"data dir {settings.data_dir.resolve()}" + (" (created now)" if created else "")
    )
    return (
        f"valhalla: serving http://{shown}:{port} (page /, API docs /docs); {where}; "
        f"{access}; {plural(workers, 'worker')}"
    )


def serve(
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="TCP port.", min=0, max=65535)] = 8000,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Data dir (default: $VALHALLA_DATA_DIR or ./data); created if missing.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[int, typer.Option(metavar="N", help="Worker processes.", min=1, max=64)] = 1,
    log_level: Annotated[
        str | None,
        typer.Option(
            metavar="LEVEL",
            help="Least important log lines written: critical, error, warning, info, debug or "
            "trace (default: $VALHALLA_LOG_LEVEL or info).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the HTTP API, the GO page and /docs."""
    from ..compose import build_context
    from ..storage.errors import StorageError
    from ..storage.sql_backend import SchemaOutOfDateError
    from ..textfiles import ConfigFileError
    from .local import load_settings

    if data_dir is not None:
        # Workers are separate processes: they read settings from the environment.
        os.environ["VALHALLA_DATA_DIR"] = str(data_dir.resolve())
    # The app answers only to Host names it is configured for; the bound
    # address is one of them.
    os.environ["VALHALLA_BIND_HOST"] = host
    # Every setting is checked before anything is made (a bad one is one
    # line naming it, exit code 2).
    try:
        settings = load_settings(data_dir, flags={"--log-level": log_level} if log_level else None)
    except CliError as exc:
        fail(CliError(f"cannot start: {exc.message.removeprefix('error: ')}", exc.code))
    if _port_in_use(host, port):
        fail(
            CliError(
                f"cannot start: port {port} on {host} is in use (another `valhalla serve`?); "
                "stop it, or pick another port with --port"
            )
        )
    made = False
    if not settings.data_dir.is_dir():
        # On SQL too: the owner credential lives there.
        _create(settings.data_dir)
        made = True
    created = made and not settings.database_url  # a JSON data dir made now
    # Open everything once here, so a bad setting is one clear message instead
    # of a traceback from every worker.
    try:
        ctx = build_context(settings)
    except (SchemaOutOfDateError, ConfigFileError, StorageError) as exc:
        if made:  # a refused start leaves nothing behind (only if still empty)
            with contextlib.suppress(OSError):
                settings.data_dir.rmdir()
        # A canon or playbook file that does not load is a bad setting too.
        fail(CliError(f"cannot start: {exc}", USAGE if isinstance(exc, ConfigFileError) else 1))
    _, upgraded = _start_credential(ctx.store, settings.data_dir, created)
    if not _binds_loopback(host) and not ctx.settings.allowed_hosts:
        typer.secho(
            f"note: only requests for localhost, 127.0.0.1, ::1"
            f"{'' if host in ('0.0.0.0', '::') else ' and ' + host} are answered (others "
            "get 421); list this machine's other names in VALHALLA_ALLOWED_HOSTS.",
            fg="yellow",
            err=True,
        )
    typer.echo(
        start_line(
            settings,
            host=host,
            port=port,
            workers=workers,
            access=_access(ctx.store),
            created=created,
        ),
        err=True,
    )
    try:
        _print_signin(ctx.store, host, port, upgraded)
    except StorageError as exc:
        typer.secho(f"warning: no sign-in link: {exc}", fg="yellow", err=True)
    _run(ctx, host=host, port=port, workers=workers)


def _run(ctx: AppContext, *, host: str, port: int, workers: int) -> None:
    """uvicorn with the limits of security/server.py, until it stops."""
    import uvicorn

    from ..auth.ratelimit import SharedFileStorage
    from ..observability import logs

    run_dirs: list[Path] = []  # removed when the server stops
    with _removed_at_exit(run_dirs):
        if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Workers add up their counters in files here; a fresh dir per run.
            run_dirs.append(_run_dir("valhalla-metrics-"))
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(run_dirs[-1])
        if workers > 1 and ctx.settings.redis_url is None and ctx.settings.rate_limit_dir is None:
            # Without Redis the workers share their rate-limit counters in one SQLite
            # file, so the enforced limit is the configured one, not N times it.
            run_dirs.append(_run_dir("valhalla-ratelimit-"))
            SharedFileStorage(run_dirs[-1])  # the schema, once, before the workers
            os.environ["VALHALLA_RATE_LIMIT_DIR"] = str(run_dirs[-1])
        # Workers read their settings from the environment: the level and
        # the format this process resolved (a worker's stderr is the same).
        log_level = ctx.settings.log_level
        os.environ["VALHALLA_LOG_LEVEL"] = log_level
        os.environ["VALHALLA_LOG_FORMAT"] = logs.resolve_format(ctx.settings.log_format)
        from ..security.server import (
            ENV_HEADER_TIMEOUT,
            ENV_MAX_OPEN,
            ENV_PER_CLIENT,
            ENV_STALL_GRACE,
            ENV_WRITE_TIMEOUT,
            KEEP_ALIVE_SECONDS,
            LISTEN_BACKLOG,
            BoundedHttpToolsProtocol,
        )

        os.environ[ENV_HEADER_TIMEOUT] = str(ctx.settings.header_timeout_seconds)
        os.environ[ENV_WRITE_TIMEOUT] = str(ctx.settings.write_timeout_seconds)
        os.environ[ENV_PER_CLIENT] = str(ctx.settings.max_connections_per_client)
        os.environ[ENV_MAX_OPEN] = str(ctx.settings.max_open_connections)
        os.environ[ENV_STALL_GRACE] = str(ctx.settings.stall_grace_seconds)

        logs.configure(log_level, ctx.settings.log_format)
        trusted = ctx.settings.trusted_proxies
        uvicorn.run(
            "valhalla_gov.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            log_config=None,
            access_log=False,
            # Limits before work: bounded heads, slow heads cut off, idle
            # connections closed, connections shared out per client, slow
            # readers dropped, at most this many busy connections per worker
            # (security/server.py).
            http=BoundedHttpToolsProtocol,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            limit_concurrency=ctx.settings.max_connections,
            # asyncio accepts this many at once before any is counted: the
            # open cap leaves room for one such burst under the fd limit.
            backlog=LISTEN_BACKLOG,
            # No WebSocket route: an Upgrade header is an ordinary request.
            ws="none",
            # X-Forwarded-* only from the proxies the operator lists (uvicorn
            # would otherwise believe any client on 127.0.0.1).
            proxy_headers=bool(trusted),
            forwarded_allow_ips=",".join(trusted) if trusted else "",
            # uvicorn kills a worker that has not answered its supervisor in this
            # time; importing the app on a busy machine can take longer than the
            # 5 s default, and the killed workers would be restarted in a loop.
            timeout_worker_healthcheck=60,
        )


def _run_dir(prefix: str) -> Path:
    """A fresh directory for this run only, readable by this user only."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=prefix))  # 0700, whatever the umask


class _Terminated(BaseException):
    """SIGTERM, as an unwinding (SIGINT is one already: KeyboardInterrupt)."""


@contextlib.contextmanager
def _removed_at_exit(paths: list[Path]) -> Iterator[None]:
    """Remove ``paths`` when the server stops, by a signal too.

    While uvicorn runs it handles SIGTERM and SIGINT itself; when it is done
    it restores the handlers it found and raises the signal again. The
    SIGTERM handler installed here turns that (or a SIGTERM before uvicorn's
    start) into an unwinding, and SIGTERM is raised once more at the end,
    with the handler from before, so the process ends as it always did."""
    import shutil
    import signal

    def terminated(_signum: int, _frame: object) -> None:
        raise _Terminated

    before = signal.signal(signal.SIGTERM, terminated)
    stopped = False
    try:
        yield
    except _Terminated:
        stopped = True
    finally:
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
        signal.signal(signal.SIGTERM, before)
    if stopped:
        signal.raise_signal(signal.SIGTERM)
