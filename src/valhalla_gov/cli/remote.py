"""The two ways a command reaches Valhalla GO, behind one interface.

* **local** (the default): the services called directly on a data dir, as
  actor ``local``, under the same store and locks as a server running on it;
* **remote**: the HTTP API of a running server (``--url`` or
  ``$VALHALLA_URL``), with a bearer token (``--token`` or ``$VALHALLA_TOKEN``).

Each command is written once against :class:`Backend`. Both backends turn
their failures into :class:`CliError`, which carries the exit code (0 done,
1 refused or unreachable, 2 usage error) and a message saying what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Protocol, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from ..audit.models import AuditEvent, AuditHead, AuditPage, AuditVerifyResult
from ..cone.canon import Action, Band
from ..cone.models import ConeDecision, ConeState
from ..go.models import Checklist, CompleteResult, NextStep
from ..go.session_models import GoSession, SessionPage
from ..insights.models import Bucket, Insights

if TYPE_CHECKING:
    import httpx2 as httpx

    from ..context import AppContext
    from ..storage.errors import StorageError

REFUSED = 1
USAGE = 2
PAGE_MAX = 500  # the largest page the API and the services hand out
END_HINT = "`valhalla go end` ends it"
AUTH_HINT = (
    "pass --token TOKEN (or set VALHALLA_TOKEN); create one on the server with "
    "`valhalla token create --name NAME --scopes operator`"
)
SERVE_HINT = "is `valhalla serve` running?"

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Talk to a running server instead of a data dir, e.g. http://127.0.0.1:8000 "
        "(default: $VALHALLA_URL).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
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


class Backend(Protocol):
    """What the commands need; :class:`LocalBackend` and :class:`RemoteBackend`."""

    def session(self) -> GoSession: ...

    def start(self, notes: str | None) -> GoSession: ...

    def end(self, notes: str | None) -> GoSession: ...

    def sessions_page(
        self,
        *,
        limit: int,
        cursor: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> SessionPage: ...

    def checklist(self) -> Checklist: ...

    def next_step(self) -> NextStep: ...

    def complete(self, step_id: str, *, done: bool, notes: str | None) -> CompleteResult: ...

    def cone_state(self) -> ConeState: ...

    def set_cone(self, band: Band, reason: str) -> ConeState: ...

    def decide(self, engine: str, action: Action) -> ConeDecision: ...

    def audit_page(self, *, limit: int, cursor: str | None, event: str | None) -> AuditPage: ...

    def verify(self, anchor: str | None = None) -> AuditVerifyResult: ...

    def head(self) -> AuditHead: ...

    def insights(
        self, *, since: datetime | None, until: datetime | None, bucket: Bucket
    ) -> Insights: ...

    def close(self) -> None: ...


# -- local ---------------------------------------------------------------------

T = TypeVar("T")


class LocalBackend:
    """The services on a data dir, as actor ``local``."""

    def __init__(self, ctx: AppContext) -> None:
        from ..auth.service import LOCAL_ACTOR

        self.ctx = ctx
        self.actor = LOCAL_ACTOR

    @classmethod
    def open(cls, data_dir: Path | None) -> LocalBackend:
        from ..storage.errors import StorageError
        from ..textfiles import ConfigFileError
        from .common import local_context

        try:
            return cls(local_context(data_dir))
        except StorageError as exc:
            raise CliError(_storage_message(exc, None)) from None
        except ConfigFileError as exc:
            raise CliError(f"error: {exc}") from None

    def _run(self, call: Callable[[], T], *, conflict_hint: str | None = None) -> T:
        from ..errors import ConflictError, DomainError, InvalidInputError, NotFoundError
        from ..storage.errors import InvalidCursorError, StorageError

        try:
            return call()
        except ConflictError as exc:
            raise CliError(_refused(exc.detail, conflict_hint)) from None
        except (NotFoundError, InvalidInputError) as exc:
            raise CliError(f"error: {exc.detail}", USAGE) from None
        except DomainError as exc:
            raise CliError(f"error: {exc.detail}") from None
        except InvalidCursorError as exc:
            raise CliError(f"error: {exc}", USAGE) from None
        except StorageError as exc:
            raise CliError(_storage_message(exc, self.ctx.settings.data_dir)) from None

    def session(self) -> GoSession:
        from ..go.session_service import get_session

        return self._run(lambda: get_session(store=self.ctx.store))

    def start(self, notes: str | None) -> GoSession:
        from ..go.session_service import start_session

        ctx = self.ctx
        return self._run(
            lambda: start_session(
                store=ctx.store, clock=ctx.clock, actor=self.actor, notes=notes, watcher=ctx.watcher
            ),
            conflict_hint=END_HINT,
        )

    def end(self, notes: str | None) -> GoSession:
        from ..go.session_service import end_session

        ctx = self.ctx
        return self._run(
            lambda: end_session(
                store=ctx.store, clock=ctx.clock, actor=self.actor, notes=notes, watcher=ctx.watcher
            )
        )

    def sessions_page(
        self,
        *,
        limit: int,
        cursor: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> SessionPage:
        from ..go.session_service import list_sessions

        return self._run(
            lambda: list_sessions(
                store=self.ctx.store, limit=limit, cursor=cursor, since=since, until=until
            )
        )

    def checklist(self) -> Checklist:
        from ..go.service import get_checklist

        ctx = self.ctx
        return self._run(
            lambda: get_checklist(
                store=ctx.store, playbook=ctx.playbook, clock=ctx.clock, watcher=ctx.watcher
            )
        )

    def next_step(self) -> NextStep:
        from ..go.service import get_next_step

        ctx = self.ctx
        return self._run(
            lambda: get_next_step(
                store=ctx.store, playbook=ctx.playbook, clock=ctx.clock, watcher=ctx.watcher
            )
        )

    def complete(self, step_id: str, *, done: bool, notes: str | None) -> CompleteResult:
        from ..go.service import complete_step

        ctx = self.ctx
        return self._run(
            lambda: complete_step(
                store=ctx.store,
                playbook=ctx.playbook,
                step_id=step_id,
                done=done,
                notes=notes,
                actor=self.actor,
                clock=ctx.clock,
            )
        )

    def cone_state(self) -> ConeState:
        from ..cone.service import get_cone_state

        return self._run(lambda: get_cone_state(store=self.ctx.store))

    def set_cone(self, band: Band, reason: str) -> ConeState:
        from ..cone.service import set_cone_state

        ctx = self.ctx
        return self._run(
            lambda: set_cone_state(
                store=ctx.store,
                band=band,
                reason=reason,
                metrics=None,
                actor=self.actor,
                clock=ctx.clock,
            )
        )

    def decide(self, engine: str, action: Action) -> ConeDecision:
        from ..cone.service import decide

        ctx = self.ctx
        return self._run(
            lambda: decide(
                store=ctx.store,
                canon=ctx.canon,
                engine=engine,
                action=action,
                actor=self.actor,
                clock=ctx.clock,
            )
        )

    def audit_page(self, *, limit: int, cursor: str | None, event: str | None) -> AuditPage:
        from ..audit.service import query_events

        return self._run(
            lambda: query_events(store=self.ctx.store, event=event, limit=limit, cursor=cursor)
        )

    def verify(self, anchor: str | None = None) -> AuditVerifyResult:
        from ..audit.service import parse_anchor, verify_chain

        return self._run(
            lambda: verify_chain(
                store=self.ctx.store, anchor=None if anchor is None else parse_anchor(anchor)
            )
        )

    def head(self) -> AuditHead:
        from ..audit.service import chain_head

        return self._run(lambda: chain_head(store=self.ctx.store))

    def insights(
        self, *, since: datetime | None, until: datetime | None, bucket: Bucket
    ) -> Insights:
        from ..insights.service import get_insights

        ctx = self.ctx
        return self._run(
            lambda: get_insights(
                store=ctx.store, since=since, until=until, bucket=bucket, now=ctx.clock()
            )
        )

    def close(self) -> None:
        return None


# -- remote --------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


class RemoteBackend:
    """The HTTP API of a running server. ``transport`` is for tests."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        from .. import __version__

        self.url = check_url(url)
        try:
            import httpx2 as httpx
        except ImportError:  # pragma: no cover - a runtime dependency; a broken install
            raise CliError(
                "error: --url needs the httpx2 package; install it (pip install httpx2) "
                "or run the command on the server's data dir"
            ) from None
        headers = {"User-Agent": f"valhalla-cli/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        conflict_hint: str | None = None,
    ) -> Any:
        import httpx2 as httpx

        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self.client.request(method, path, params=query or None, json=body)
        except httpx.TimeoutException as exc:
            raise CliError(f"cannot reach {self.url}: timed out ({exc}); {SERVE_HINT}") from None
        except httpx.InvalidURL as exc:
            raise CliError(f"error: --url {self.url!r} is not usable: {exc}", USAGE) from None
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise CliError(f"cannot reach {self.url}: {reason}; {SERVE_HINT}") from None
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if resp.is_success and payload is not None:
            return payload
        raise CliError(*_http_failure(self.url, resp.status_code, payload, resp, conflict_hint))

    def _get(self, model: type[M], path: str, **params: Any) -> M:
        return self._parse(model, self._request("GET", path, params=params))

    def _post(
        self, model: type[M], path: str, body: dict[str, Any], *, conflict_hint: str | None = None
    ) -> M:
        return self._parse(
            model, self._request("POST", path, body=body, conflict_hint=conflict_hint)
        )

    def _parse(self, model: type[M], payload: Any) -> M:
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            raise CliError(
                f"{self.url} answered with an unexpected {model.__name__}: is it a Valhalla GO "
                f"server of this version? ({exc.error_count()} problems)"
            ) from None

    def session(self) -> GoSession:
        return self._get(GoSession, "/core/go/session")

    def start(self, notes: str | None) -> GoSession:
        return self._post(
            GoSession, "/core/go/start_session", {"notes": notes}, conflict_hint=END_HINT
        )

    def end(self, notes: str | None) -> GoSession:
        return self._post(GoSession, "/core/go/end_session", {"notes": notes})

    def sessions_page(
        self,
        *,
        limit: int,
        cursor: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> SessionPage:
        return self._get(
            SessionPage,
            "/core/go/sessions",
            limit=limit,
            cursor=cursor,
            since=_iso(since),
            until=_iso(until),
        )

    def checklist(self) -> Checklist:
        return self._get(Checklist, "/core/go/checklist")

    def next_step(self) -> NextStep:
        return self._get(NextStep, "/core/go/next_step")

    def complete(self, step_id: str, *, done: bool, notes: str | None) -> CompleteResult:
        return self._post(
            CompleteResult,
            "/core/go/complete",
            {"step_id": step_id, "done": done, "notes": notes},
        )

    def cone_state(self) -> ConeState:
        return self._get(ConeState, "/core/cone/state")

    def set_cone(self, band: Band, reason: str) -> ConeState:
        return self._post(ConeState, "/core/cone/state", {"band": band, "reason": reason})

    def decide(self, engine: str, action: Action) -> ConeDecision:
        return self._post(ConeDecision, "/core/cone/decide", {"engine": engine, "action": action})

    def audit_page(self, *, limit: int, cursor: str | None, event: str | None) -> AuditPage:
        return self._get(AuditPage, "/core/audit/events", limit=limit, cursor=cursor, event=event)

    def verify(self, anchor: str | None = None) -> AuditVerifyResult:
        if anchor is None:
            return self._get(AuditVerifyResult, "/core/audit/verify")
        return self._get(AuditVerifyResult, "/core/audit/verify", anchor=anchor)

    def head(self) -> AuditHead:
        return self._get(AuditHead, "/core/audit/head")

    def insights(
        self, *, since: datetime | None, until: datetime | None, bucket: Bucket
    ) -> Insights:
        return self._get(
            Insights, "/core/go/insights", since=_iso(since), until=_iso(until), bucket=bucket
        )

    def close(self) -> None:
        self.client.close()


def check_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash, or a usage error."""
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
    return text


def _iso(moment: datetime | None) -> str | None:
    from ..timeutil import iso_z

    return None if moment is None else iso_z(moment)


def _refused(detail: str, hint: str | None) -> str:
    return f"refused: {detail}" + (f" ({hint})" if hint else "")


def _storage_message(exc: StorageError, data_dir: Path | None) -> str:
    """Name the file (a bare name is in the data dir) and what to do about it."""
    from ..storage.errors import StorageCorruptError

    where = Path(exc.path)
    if data_dir is not None and where.parent == Path("."):
        where = data_dir / where
    advice = ""
    if isinstance(exc, StorageCorruptError) and "aside" not in exc.detail:
        advice = "; it is left as it was: repair it or move it aside"
    return f"storage error: {where}: {exc.detail}{advice}"


def _detail(payload: Any) -> str:
    """FastAPI's ``detail``: a message, or a list of validation errors."""
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
        if parts:
            return "; ".join(parts)
    return json.dumps(payload) if payload is not None else "no details"


def _http_failure(  # noqa: PLR0911 - one return per status family reads best
    url: str, status: int, payload: Any, resp: httpx.Response, conflict_hint: str | None
) -> tuple[str, int]:
    """The message and exit code for an HTTP answer that is not a success."""
    if payload is None:
        return (
            f"{url} answered HTTP {status} without JSON: is it a Valhalla GO server? "
            f"({SERVE_HINT})",
            REFUSED,
        )
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
        retry = resp.headers.get("Retry-After")
        wait = f"; retry in {retry} s" if retry else ""
        return f"refused: rate limited: {detail}{wait}", REFUSED
    if status == 503:
        where = payload.get("file") if isinstance(payload, dict) else None
        named = f" (file {where})" if where else ""
        return (
            f"server storage error{named}: {detail}; the server leaves the file as it was: "
            "repair it or move it aside on the server",
            REFUSED,
        )
    if status in (404, 422) or 400 <= status < 500:
        return f"error: {detail}", USAGE
    return f"server error (HTTP {status}): {detail}", REFUSED


# -- choosing a backend, running a command ---------------------------------------


@contextmanager
def open_backend(data_dir: Path | None, url: str | None, token: str | None) -> Iterator[Backend]:
    """Remote with ``--url`` (or ``$VALHALLA_URL`` unless ``--data-dir`` is
    given), local otherwise. ``--token`` alone, or with ``--data-dir``, is a
    usage error: a local command needs none."""
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
        backend: Backend = LocalBackend.open(data_dir)
    else:
        backend = RemoteBackend(url, token or os.environ.get("VALHALLA_TOKEN") or None)
    try:
        yield backend
    finally:
        backend.close()


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


# -- paging ----------------------------------------------------------------------


def iter_sessions(
    backend: Backend,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    page_size: int = PAGE_MAX,
) -> Iterator[GoSession]:
    """Every ended session whose start is in [since, until], newest first,
    following the cursor page by page."""
    cursor: str | None = None
    while True:
        page = backend.sessions_page(
            limit=min(max(page_size, 1), PAGE_MAX), cursor=cursor, since=since, until=until
        )
        yield from page.items
        if page.next_cursor is None or not page.items:
            return
        cursor = page.next_cursor


def iter_events(
    backend: Backend, *, event: str | None = None, page_size: int = PAGE_MAX
) -> Iterator[AuditEvent]:
    """Audit events newest first, following the cursor page by page."""
    cursor: str | None = None
    while True:
        page = backend.audit_page(
            limit=min(max(page_size, 1), PAGE_MAX), cursor=cursor, event=event
        )
        yield from page.items
        if page.next_cursor is None or not page.items:
            return
        cursor = page.next_cursor
