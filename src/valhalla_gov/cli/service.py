"""A command's way to the API, whichever side it is on: :class:`Service`
(an httpx client, in process or over HTTP) and :func:`failure`, the one
place that turns an answer into a message and an exit code (0 done, 1
refused or unreachable, 2 usage error)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

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
    "`valhalla token create --name NAME --scopes operator`. On the server's machine, the "
    "account that owns its data dir needs none: set VALHALLA_DATA_DIR to that data dir"
)
SERVE_HINT = "is `valhalla serve` running?"


class CliError(Exception):
    """A command failed: ``message`` goes to stderr, ``code`` is the exit code."""

    def __init__(self, message: str, code: int = REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Reply(Protocol):
    """What a command reads of an answer: an httpx response, or a
    :class:`DirectReply`."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def is_success(self) -> bool: ...

    def json(self) -> Any: ...


@dataclass(frozen=True)
class DirectReply:
    """The answer of a read served without the app (see :mod:`.local`): the
    status and JSON body the app's route would have sent."""

    status_code: int
    payload: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    # A success's answer as the route's response model, before it would be
    # serialised: a command reading that model takes it as it is.
    model: BaseModel | None = None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        if self.payload is None and self.model is not None:
            return self.model.model_dump(mode="json")
        return self.payload


# A command's request answered without the app (see :mod:`.direct`): method,
# path, query (values as the command gave them) and body; None when only
# the app can answer it.
Direct = Callable[[str, str, dict[str, Any], "dict[str, Any] | None"], DirectReply | None]


class Service:
    """An HTTP client on the API, local (in process) or remote: the commands
    do not know which. ``client`` may be a function that makes it, called on
    the first request that needs it; ``direct`` answers some GETs in its place."""

    def __init__(
        self,
        client: httpx.Client | Callable[[], httpx.Client],
        *,
        where: str,
        local: bool,
        direct: Direct | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._on_close = on_close
        self.where = where  # the URL, or the data dir / database, for messages
        self.local = local
        self.direct = direct

    @property
    def client(self) -> httpx.Client:
        if callable(self._client):
            self._client = self._client()
        return self._client

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        conflict_hint: str | None = None,
        exit_codes: dict[int, int] | None = None,
    ) -> Reply:
        """Send one request; a failure becomes a :class:`CliError`.
        ``exit_codes`` overrides the exit code for some statuses."""
        given = {k: v for k, v in (params or {}).items() if v is not None}
        resp: Reply | None = None
        if self.direct is not None:
            resp = self.direct(method, path, given, body)
        if resp is None:
            query = {k: _query_value(v) for k, v in given.items()}
            resp = self._send(method, path, query, body)
        if not resp.is_success or (_model(resp) is None and _json(resp) is None):
            message, code = failure(self, resp, conflict_hint)
            raise CliError(message, (exit_codes or {}).get(resp.status_code, code))
        return resp

    def _send(
        self, method: str, path: str, query: dict[str, Any], body: dict[str, Any] | None
    ) -> httpx.Response:
        import httpx2 as httpx

        try:
            return self.client.request(method, path, params=query or None, json=body)
        except httpx.TimeoutException as exc:
            raise CliError(f"cannot reach {self.where}: timed out ({exc}); {SERVE_HINT}") from None
        except httpx.InvalidURL as exc:
            raise CliError(f"error: --url {self.where!r} is not usable: {exc}", USAGE) from None
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise CliError(f"cannot reach {self.where}: {reason}; {SERVE_HINT}") from None

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
        found = _model(resp)
        if isinstance(found, model):
            return found
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
        if not callable(self._client):
            self._client.close()
        if self._on_close is not None:
            self._on_close()


def _query_value(value: Any) -> Any:
    if isinstance(value, datetime):
        from ..timeutil import iso_z

        return iso_z(value)
    return value


def _model(resp: Reply) -> BaseModel | None:
    return resp.model if isinstance(resp, DirectReply) else None


def _json(resp: Reply) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


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
                # pydantic prefixes a validator's own words with "Value error, ".
                msg = str(item.get("msg")).removeprefix("Value error, ")
                parts.append(f"{loc}: {msg}" if loc else msg)
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
    service: Service, resp: Reply, conflict_hint: str | None = None
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
