"""The one way a command reaches Valhalla GO: its HTTP API.

* **local** (the default): the same FastAPI app, in this process, on the local
  data dir (or ``$VALHALLA_DATABASE_URL``), over an in-process transport
  (:mod:`.local`); the operator at the data dir acts as ``local`` (owner);
* **remote**: a running server (``--url`` or ``$VALHALLA_URL``) over HTTP,
  with a bearer token (``--token`` or ``$VALHALLA_TOKEN``).

Either way a command sends the same request and reads the same answer, and
:func:`failure` is the one place that turns an answer into a message and an
exit code (0 done, 1 refused or unreachable, 2 usage error).

Only ``typer`` is imported at module level: ``valhalla --help`` must not pay
for pydantic, httpx or the app.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    import httpx2 as httpx
    from pydantic import BaseModel

    M = TypeVar("M", bound=BaseModel)

OK = 0
REFUSED = 1
USAGE = 2
PAGE_MAX = 500  # the largest page the API hands out
END_HINT = "`valhalla go end` ends it"
AUTH_HINT = (
    "pass --token TOKEN (or set VALHALLA_TOKEN); create one on the server with "
    "`valhalla token create --name NAME --scopes operator`"
)
SERVE_HINT = "is `valhalla serve` running?"
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
        help="API token for --url, sent as 'Authorization: Bearer' (default: $VALHALLA_TOKEN; "
        "prefer the variable: a command line is visible to other users).",
        show_default=False,
    ),
]


class CliError(Exception):
    """A command failed: ``message`` goes to stderr, ``code`` is the exit code."""

    def __init__(self, message: str, code: int = REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Service:
    """An HTTP client on the API, local (in process) or remote: the commands
    do not know which."""

    def __init__(self, client: httpx.Client, *, where: str, local: bool) -> None:
        self.client = client
        self.where = where  # the URL, or the data dir / database, for messages
        self.local = local

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        conflict_hint: str | None = None,
        exit_codes: dict[int, int] | None = None,
    ) -> httpx.Response:
        """Send one request; a failure becomes a :class:`CliError`.
        ``exit_codes`` overrides the exit code for some statuses."""
        import httpx2 as httpx

        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        try:
            resp = self.client.request(method, path, params=query or None, json=body)
        except httpx.TimeoutException as exc:
            raise CliError(f"cannot reach {self.where}: timed out ({exc}); {SERVE_HINT}") from None
        except httpx.InvalidURL as exc:
            raise CliError(f"error: --url {self.where!r} is not usable: {exc}", USAGE) from None
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise CliError(f"cannot reach {self.where}: {reason}; {SERVE_HINT}") from None
        if not resp.is_success or _json(resp) is None:
            message, code = failure(self, resp, conflict_hint)
            raise CliError(message, (exit_codes or {}).get(resp.status_code, code))
        return resp

    def call(
        self,
        model: type[M],
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        conflict_hint: str | None = None,
        exit_codes: dict[int, int] | None = None,
    ) -> M:
        resp = self.request(
            method,
            path,
            params=params,
            body=body,
            conflict_hint=conflict_hint,
            exit_codes=exit_codes,
        )
        return self.parse(model, _json(resp))

    def get(self, model: type[M], path: str, **params: Any) -> M:
        return self.call(model, "GET", path, params=params)

    def post(
        self, model: type[M], path: str, body: dict[str, Any], *, conflict_hint: str | None = None
    ) -> M:
        return self.call(model, "POST", path, body=body, conflict_hint=conflict_hint)

    def parse(self, model: type[M], payload: Any) -> M:
        from pydantic import ValidationError

        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            raise CliError(
                f"{self.where} answered with an unexpected {model.__name__}: is it a Valhalla GO "
                f"server of this version? ({exc.error_count()} problems)"
            ) from None

    def close(self) -> None:
        self.client.close()


def _query_value(value: Any) -> Any:
    if isinstance(value, datetime):
        from ..timeutil import iso_z

        return iso_z(value)
    return value


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


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


# -- the one error mapping ----------------------------------------------------------


def _detail(payload: Any) -> str:
    """FastAPI's ``detail``: a message, or a list of validation errors."""
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p not in ("body", "query"))
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
        if parts:
            return "; ".join(parts)
    return json.dumps(payload) if payload is not None else "no details"


def _refused(detail: str, hint: str | None) -> str:
    return f"refused: {detail}" + (f" ({hint})" if hint else "")


def _storage(service: Service, payload: dict[str, Any]) -> str:
    """Name the file once, and what to do about it."""
    where = payload.get("file")
    detail = str(payload.get("detail", ""))
    # The API says "storage unavailable: <file>: <reason>"; keep the reason.
    for prefix in ("storage unavailable: ", f"{where}: "):
        detail = detail.removeprefix(prefix)
    if service.local:
        path = Path(str(where)) if where else None
        data_dir = Path(service.where)
        if path is not None and path.parent == Path(".") and data_dir.is_dir():
            path = data_dir / path  # a bare name is in the data dir
        named = f"{path}: " if path else ""
        advice = (
            ""
            if "aside" in detail
            else "; repair it or move it aside"
            if "untouched" in detail
            else "; it is left as it was: repair it or move it aside"
        )
        return f"storage error: {named}{detail}{advice}"
    named = f" (file {where})" if where else ""
    return (
        f"server storage error{named}: {detail}; the server leaves the file as it was: "
        "repair it or move it aside on the server"
    )


def failure(  # noqa: PLR0911 - one return per status family reads best
    service: Service, resp: httpx.Response, conflict_hint: str | None = None
) -> tuple[str, int]:
    """The message and exit code for an answer that is not a JSON success."""
    status = resp.status_code
    payload = _json(resp)
    if payload is None:
        return (
            f"{service.where} answered HTTP {status} without JSON: is it a Valhalla GO "
            f"server? ({SERVE_HINT})",
            REFUSED,
        )
    if resp.is_success:
        return f"{service.where} answered HTTP {status} with an unexpected body", REFUSED
    detail = _detail(payload)
    if status == 409:
        return _refused(detail, conflict_hint), REFUSED
    if status == 401:
        return f"unauthorized: {detail}; {AUTH_HINT}", REFUSED
    if status == 403:
        return (
            f"forbidden: {detail}; use a token with that scope "
            "(`valhalla token create --name NAME --scopes SCOPE` on the server)",
            REFUSED,
        )
    if status == 429:
        # The detail already says when to retry; fall back on the header.
        retry = resp.headers.get("Retry-After")
        wait = f"; retry in {retry}s" if retry and "retry in" not in detail else ""
        return f"refused: {detail}{wait}", REFUSED
    if status == 503 and isinstance(payload, dict) and "file" in payload:
        return _storage(service, payload), REFUSED
    if status == 503:
        return f"refused: {detail}", REFUSED
    if 400 <= status < 500:
        return f"error: {detail}", USAGE
    return f"server error (HTTP {status}): {detail}", REFUSED


# -- choosing the way in, running a command -----------------------------------------


def remote_service(
    url: str,
    token: str | None = None,
    *,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> Service:
    """A server over HTTP. ``transport`` is for tests."""
    import httpx2 as httpx

    from .. import __version__

    base = check_url(url)
    headers = {"User-Agent": f"valhalla-cli/{__version__}", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    client = httpx.Client(base_url=base, headers=headers, timeout=timeout, transport=transport)
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
        service = remote_service(url, token or os.environ.get("VALHALLA_TOKEN") or None)
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
