"""The one way a command reaches Valhalla GO: its HTTP API.

* **local** (the default): the request is answered in this process by the
  feature service its route calls (:mod:`.direct`), on the local data dir (or
  ``$VALHALLA_DATABASE_URL``); the operator at the data dir acts as ``local``
  (owner);
* **remote**: a running server (``--url`` or ``$VALHALLA_URL``) over HTTP,
  with a bearer token (``--token`` or ``$VALHALLA_TOKEN``); without one, on
  the server's machine, the data dir's owner credential (see
  :mod:`.credential`).

Either way a command sends the same request and reads the same answer, and
:func:`.service.failure` is the one place that turns an answer into a message and an
exit code (0 done, 1 refused or unreachable, 2 usage error).

Only ``typer`` is imported at module level: ``valhalla --help`` must not pay
for pydantic, httpx or the app.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

# Re-exported: the commands import everything they need from here.
from .service import (
    AUTH_HINT,
    END_HINT,
    OK,
    PAGE_MAX,
    REFUSED,
    SERVE_HINT,
    USAGE,
    CliError,
    Service,
    failure,
)

__all__ = [
    "AUTH_HINT",
    "END_HINT",
    "OK",
    "PAGE_MAX",
    "REFUSED",
    "SERVE_HINT",
    "USAGE",
    "CliError",
    "DataDirOption",
    "JsonOption",
    "Service",
    "TokenOption",
    "UrlOption",
    "check_url",
    "fail",
    "failure",
    "iter_pages",
    "open_service",
    "plural",
    "remote_service",
    "reported",
]

if TYPE_CHECKING:
    import httpx2 as httpx
    from pydantic import BaseModel

    M = TypeVar("M", bound=BaseModel)

# The first path segments the app serves itself: a --url ending in one of them
# is an endpoint, not a server address (a reverse proxy's own prefix is fine).
APP_PATHS = frozenset({"core", "docs", "redoc", "openapi.json", "metrics", "static"})

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        metavar="DIR",
        help="Data dir (default: $VALHALLA_DATA_DIR or ./data); it must exist "
        "(`valhalla init DIR` creates one).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        metavar="URL",
        help="Talk to a running server instead of a data dir, e.g. http://127.0.0.1:8000 "
        "(default: $VALHALLA_URL).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        help="API token for --url, sent as 'Authorization: Bearer' (default: $VALHALLA_TOKEN, "
        "else, for a server on this machine, the data dir's owner credential; prefer the "
        "variable: a command line is visible to other users).",
        show_default=False,
    ),
]


def check_url(url: str) -> str:
    """``http(s)://host[:port][/proxy-prefix]`` without a trailing slash, or a
    usage error naming the fix."""
    from urllib.parse import urlsplit

    text = url.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
        raise CliError(
            f"error: --url {url!r} is not a server address; pass one such as http://127.0.0.1:8000",
            USAGE,
        )
    segments = [s for s in parts.path.split("/") if s]
    if parts.query or parts.fragment or any(s in APP_PATHS for s in segments):
        root = f"{parts.scheme}://{parts.netloc}"
        raise CliError(
            f"error: --url {url!r} names an endpoint, not the server; pass the server's "
            f"address, e.g. --url {root} (the CLI adds /core/...)",
            USAGE,
        )
    return text


# -- choosing the way in, running a command -----------------------------------------


def remote_service(
    url: str,
    token: str | None = None,
    *,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
    owner_credential: bool = False,
) -> Service:
    """A server over HTTP. ``owner_credential``: without ``token``, send the
    data dir's owner credential where :func:`.credential.owner_credential_for`
    allows it. ``transport`` is for tests."""
    import httpx2 as httpx

    from .. import __version__
    from .credential import is_loopback_url, owner_credential_for

    base = check_url(url)
    headers = {"User-Agent": f"valhalla-cli/{__version__}", "Accept": "application/json"}
    if not token and owner_credential:
        token = owner_credential_for(base)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    client = httpx.Client(
        base_url=base,
        headers=headers,
        timeout=timeout,
        transport=transport,
        # A proxy from the environment never sees a request to this machine
        # (nor the credential it carries).
        trust_env=not is_loopback_url(base),
    )
    return Service(client, where=base, local=False)


@contextmanager
def open_service(data_dir: Path | None, url: str | None, token: str | None) -> Iterator[Service]:
    """Remote with ``--url`` (or ``$VALHALLA_URL`` unless ``--data-dir`` is
    given), local otherwise. ``--token`` without a server is a usage error: a
    local command needs none."""
    if url is not None and data_dir is not None:
        raise CliError("error: pass either --url or --data-dir, not both", USAGE)
    if url is None and data_dir is None:
        url = os.environ.get("VALHALLA_URL") or None
    if url is None:
        if token is not None:
            raise CliError(
                "error: --token is for a server: pass --url too (local commands need no token)",
                USAGE,
            )
        from .local import local_service

        service = local_service(data_dir)
    else:
        given = token or os.environ.get("VALHALLA_TOKEN") or None
        service = remote_service(url, given, owner_credential=given is None)
    try:
        yield service
    finally:
        service.close()


def fail(error: CliError) -> NoReturn:
    typer.secho(error.message, fg="red", err=True)
    raise typer.Exit(error.code)


@contextmanager
def reported() -> Iterator[None]:
    """Turn a :class:`CliError` into its message on stderr and its exit code."""
    try:
        yield
    except CliError as exc:
        fail(exc)


def iter_pages(service: Service, model: type[M], path: str, **params: Any) -> Iterator[Any]:
    """Every item of a cursor-paged list (``{"items", "next_cursor"}``),
    following the cursor page by page."""
    limit = min(max(int(params.pop("limit", PAGE_MAX)), 1), PAGE_MAX)
    cursor: str | None = None
    while True:
        page = service.get(model, path, limit=limit, cursor=cursor, **params)
        items = getattr(page, "items", [])
        yield from items
        cursor = getattr(page, "next_cursor", None)
        if cursor is None or not items:
            return


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 session``, ``2 sessions``."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"
