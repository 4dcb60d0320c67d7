"""Local commands without the web app: each API path a local command uses,
answered by the feature service its route calls, on the store.

The routes are thin (parse, call the service, map errors), so calling the
same service with the same arguments is the same rule, the same audit record
and the same refusal, without importing FastAPI or building the app (which
costs many times what a command should). What the route does around the
service is done here the same way: the request body is checked with the
route's own request model, the operator at the data dir acts as ``local``
(owner), health is judged on the spot as an app judges it when no background
task runs, and every error becomes the status and body the app's handlers
would answer (:func:`answer`), so :func:`.service.failure` still maps every
failure in one place.

A path not listed in :data:`ROUTES` goes to the in-process app (see
:mod:`.local`): a webhook's test send, which needs the app's HTTP sender,
and the rest of what no local command reads often.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .service import DirectReply

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..cone.canon import Canon
    from ..go.models import Playbook
    from ..health.models import HealthStatus
    from ..storage.protocol import Schema, Store

NOOP_HEADER = "Valhalla-Noop"  # as go/session_router.py sets it
ACTOR = "local"  # auth.service.LOCAL_OWNER's name (tests keep the two equal)
# audit/router.py: an event name in the app's style matches in any case.
EVENT_STYLE = re.compile(r"[A-Za-z]+(?:_[A-Za-z]+)+")


class Refused(Exception):
    """A refusal a handler spells as the app's answer to it."""

    def __init__(self, reply: DirectReply) -> None:
        super().__init__(reply.status_code)
        self.reply = reply


@dataclass
class LocalConfig:
    """What local commands read of the settings."""

    data_dir: Path
    database_url: str | None = None
    canon_file: Path | None = None
    playbook_file: Path | None = None


def full_schema() -> Schema:
    """Every feature's documents and logs (compose.SCHEMA, without importing
    the composition root and, through it, FastAPI); a test keeps the two equal."""
    from ..audit.store import SCHEMA as AUDIT
    from ..auth.store import SCHEMA as AUTH
    from ..cone.store import SCHEMA as CONE
    from ..go.session_store import SCHEMA as SESSIONS
    from ..go.store import SCHEMA as GO
    from ..health.store import SCHEMA as HEALTH
    from ..webhooks.store import SCHEMA as WEBHOOKS

    return GO + SESSIONS + HEALTH + CONE + AUDIT + AUTH + WEBHOOKS


@dataclass
class Core:
    """The store and what the routes read from the app's context, made on
    first use: a command opens only what its one call needs. ``open_store``
    opens the data dir or database with the declarations it is given."""

    config: LocalConfig
    open_store: Callable[[Schema], Store]
    # The declarations the store is opened with (see ROUTES): every
    # feature's unless the one request sent needs fewer.
    schema: Callable[[], Schema] = field(default=full_schema)
    _store: Store | None = field(default=None, init=False)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self.open_store(self.schema())
        return self._store

    def close(self) -> None:
        close = getattr(self._store, "close", None)  # the SQL store's pool
        if callable(close):
            close()

    def health(self) -> HealthStatus:
        """What HealthPublisher.current() answers in a process with no
        background task: health judged now."""
        from ..audit.service import ChainWatcher
        from ..health.service import compute_health
        from ..timeutil import utc_now

        return compute_health(store=self.store, clock=utc_now, watcher=ChainWatcher())

    def playbook(self) -> Playbook:
        from ..go.playbook import load_playbook

        return load_playbook(self.config.playbook_file)

    def canon(self) -> Canon:
        from ..cone.canon import load_canon

        return load_canon(self.config.canon_file)


def _sessions_schema() -> Schema:
    from ..go.session_store import SCHEMA

    return SCHEMA


def _cone_schema() -> Schema:
    from ..audit.store import SCHEMA as AUDIT
    from ..cone.store import SCHEMA

    return SCHEMA + AUDIT


def _audit_schema() -> Schema:
    from ..audit.store import SCHEMA

    return SCHEMA


def _auth_schema() -> Schema:
    from ..audit.store import SCHEMA as AUDIT
    from ..auth.store import SCHEMA

    return SCHEMA + AUDIT


def _webhooks_schema() -> Schema:
    from ..audit.store import SCHEMA as AUDIT
    from ..webhooks.store import SCHEMA

    return SCHEMA + AUDIT


Params = Mapping[str, Any]
Body = Mapping[str, Any] | None
Handler = Callable[[Core, Params, Body, str], "BaseModel | tuple[BaseModel, dict[str, str]]"]


def _clock() -> Callable[[], datetime]:
    from ..timeutil import utc_now

    return utc_now


def _body(model: type[Any], body: Body) -> Any:
    """The request body as the route's model parses it (a ValidationError is
    the route's 422)."""
    return model.model_validate(dict(body or {}))


def _utc(value: Any) -> datetime | None:
    from ..timeutil import as_utc

    return as_utc(value) if isinstance(value, datetime) else None


# -- GO sessions and the playbook ---------------------------------------------------


def _session(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..go.session_reads import get_session

    return get_session(store=core.store)


def _start(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..go import session_service
    from ..go.session_models import SessionNotes

    notes = _body(SessionNotes, body).notes
    return session_service.start_session(
        store=core.store, clock=_clock(), actor=ACTOR, notes=notes, health=core.health()
    )


def _end(core: Core, params: Params, body: Body, rest: str) -> tuple[BaseModel, dict[str, str]]:
    from ..go import session_service
    from ..go.session_models import SessionNotes

    notes = _body(SessionNotes, body).notes
    session, ended = session_service.end_session_outcome(
        store=core.store, clock=_clock(), actor=ACTOR, notes=notes, health=core.health()
    )
    return session, ({} if ended else {NOOP_HEADER: "true"})


def _sessions(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..go import session_service

    return session_service.list_sessions(
        store=core.store,
        limit=int(params.get("limit", 50)),
        cursor=params.get("cursor"),
        since=_utc(params.get("since")),
        until=_utc(params.get("until")),
    )


def _checklist(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..go import service

    playbook = core.playbook()
    return service.get_checklist(store=core.store, playbook=playbook, health=core.health())


def _next(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..go import service

    playbook = core.playbook()
    return service.get_next_step(store=core.store, playbook=playbook, health=core.health())


def _complete(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..go import service
    from ..go.models import CompleteRequest

    request = _body(CompleteRequest, body)
    playbook = core.playbook()
    return service.complete_step(
        store=core.store,
        playbook=playbook,
        step_id=request.step_id,
        done=request.done,
        notes=request.notes,
        keep_notes="notes" not in request.model_fields_set,
        actor=ACTOR,
        clock=_clock(),
        health=core.health(),
    )


def _insights(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..insights import service

    return service.get_insights(
        store=core.store,
        since=_utc(params.get("since")),
        until=_utc(params.get("until")),
        bucket=params.get("bucket", "week"),
        now=_clock()(),
    )


# -- the cone -------------------------------------------------------------------------


def _cone(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..cone import service

    return service.get_cone_state(store=core.store)


def _cone_set(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..cone import service
    from ..cone.models import ConeSetRequest

    request = _body(ConeSetRequest, body)
    return service.set_cone_state(
        store=core.store,
        band=request.band,
        reason=request.reason,
        metrics=request.metrics,
        actor=ACTOR,
        clock=_clock(),
    )


def _decide(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..cone import service
    from ..cone.models import ConeDecideRequest

    request = _body(ConeDecideRequest, body)
    canon = core.canon()
    return service.decide(
        store=core.store,
        canon=canon,
        engine=request.engine,
        action=request.action,
        actor=ACTOR,
        clock=_clock(),
        role="owner",
    )


# -- the audit log --------------------------------------------------------------------


def _events(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..audit import service

    event = params.get("event")
    if isinstance(event, str) and EVENT_STYLE.fullmatch(event.strip()):
        event = event.strip().upper()
    return service.query_events(
        store=core.store,
        event=event,
        since=_utc(params.get("since")),
        until=_utc(params.get("until")),
        limit=int(params.get("limit", 100)),
        cursor=params.get("cursor"),
    )


def _verify(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..audit import service

    anchor = params.get("anchor")
    parsed = None if anchor is None else service.parse_anchor(str(anchor))
    return service.verify_chain(store=core.store, anchor=parsed)


def _head(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..audit import service

    return service.chain_head(store=core.store)


# -- tokens and webhooks ------------------------------------------------------------


def _tokens(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..auth.models import TokenList
    from ..auth.service import list_tokens

    return TokenList(list_tokens(store=core.store))


def _token_create(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..auth.models import SCOPES, TokenCreate, TokenCreated
    from ..auth.service import create_token

    request = _body(TokenCreate, body)
    scopes = [s for s in SCOPES if s in request.scopes]  # as the route: one order
    info, token = create_token(
        store=core.store, name=request.name, scopes=scopes, actor=ACTOR, clock=_clock()
    )
    return TokenCreated(**info.model_dump(), token=token)


def _token_revoke(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..auth.models import TOKEN_NAME_PATTERN
    from ..auth.service import revoke_token
    from ..errors import NotFoundError

    if not re.fullmatch(TOKEN_NAME_PATTERN, rest):
        # The route's path pattern refuses it; no token can have that name.
        raise NotFoundError(f"no token named {rest!r}")
    return revoke_token(store=core.store, name=rest, actor=ACTOR, clock=_clock())


def _link(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..auth.service import create_signin_code

    return create_signin_code(store=core.store, actor=ACTOR, clock=_clock())


def _webhooks(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..webhooks import service
    from ..webhooks.models import WebhookList

    return WebhookList(service.list_webhooks(store=core.store))


def _webhook_remove(core: Core, params: Params, body: Body, rest: str) -> BaseModel:
    from ..webhooks import service
    from ..webhooks.models import NAME_PATTERN, NAME_RULE, WebhookRemoved

    if not re.match(NAME_PATTERN, rest):
        # The route's path parameter (WebhookName) refuses it, in these words.
        msg = f"a webhook name is {NAME_RULE}"
        detail = [{"type": "webhook_name", "loc": ["path", "name"], "msg": msg}]
        raise Refused(DirectReply(422, {"detail": detail}))

    service.remove_webhook(store=core.store, name=rest, actor=ACTOR, clock=_clock())
    return WebhookRemoved(removed=rest)


# (method, path) -> handler and the declarations the store needs for it:
# every feature's for a route that judges health (its storage check probes
# them all, as the app's does), the feature's own for the others (importing
# every feature's models costs more than the rest of such a command). A path
# ending in "/" takes one more segment (a name, URL-quoted by the command),
# handed to the handler as ``rest``.
ROUTES: dict[tuple[str, str], tuple[Handler, Callable[[], Schema]]] = {
    ("GET", "/core/go/session"): (_session, _sessions_schema),
    ("POST", "/core/go/start_session"): (_start, full_schema),
    ("POST", "/core/go/end_session"): (_end, full_schema),
    ("GET", "/core/go/sessions"): (_sessions, _sessions_schema),
    ("GET", "/core/go/checklist"): (_checklist, full_schema),
    ("GET", "/core/go/next_step"): (_next, full_schema),
    ("POST", "/core/go/complete"): (_complete, full_schema),
    ("GET", "/core/go/insights"): (_insights, _sessions_schema),
    ("GET", "/core/cone/state"): (_cone, _cone_schema),
    ("POST", "/core/cone/state"): (_cone_set, _cone_schema),
    ("POST", "/core/cone/decide"): (_decide, _cone_schema),
    ("GET", "/core/audit/events"): (_events, _audit_schema),
    ("GET", "/core/audit/verify"): (_verify, _audit_schema),
    ("GET", "/core/audit/head"): (_head, _audit_schema),
    ("GET", "/core/tokens"): (_tokens, _auth_schema),
    ("POST", "/core/tokens"): (_token_create, _auth_schema),
    ("DELETE", "/core/tokens/"): (_token_revoke, _auth_schema),
    ("POST", "/core/auth/links"): (_link, _auth_schema),
    ("GET", "/core/webhooks"): (_webhooks, _webhooks_schema),
    ("DELETE", "/core/webhooks/"): (_webhook_remove, _webhooks_schema),
}


def find(method: str, path: str) -> tuple[Handler, Callable[[], Schema], str] | None:
    found = ROUTES.get((method, path))
    if found is not None:
        return (*found, "")
    prefix, sep, name = path.rpartition("/")
    found = ROUTES.get((method, prefix + sep))
    if found is None or not name:
        return None
    from urllib.parse import unquote

    return (*found, unquote(name))


def answer(core: Core, method: str, path: str, params: Params, body: Body) -> DirectReply | None:
    """The app's answer to one request, computed here; None for a path that
    only the app answers."""
    found = find(method, path)
    if found is None:
        return None
    handler, schema, rest = found
    if core._store is None:
        core.schema = schema
    elif schema is not core.schema and core.schema is not full_schema:
        # A command sends one request, or the pages of one list; another
        # request's needs are met by every declaration.
        core.close()
        core._store, core.schema = None, full_schema
    try:
        result = handler(core, params, body, rest)
    except Exception as exc:
        refusal = _refusal(exc)
        if refusal is None:
            raise
        return refusal
    model, headers = result if isinstance(result, tuple) else (result, {})
    return DirectReply(200, None, headers, model=model)


def _refusal(exc: Exception) -> DirectReply | None:
    """The status and body the app's error handlers answer for ``exc``
    (app.py), None for an error they do not handle."""
    from pydantic import ValidationError

    from ..errors import DomainError, storage_unavailable
    from ..storage.errors import InvalidCursorError, StorageError, UnstorableValueError

    if isinstance(exc, Refused):
        return exc.reply
    if isinstance(exc, ValidationError):  # the route's request model refused the body
        from ..plain_errors import plain_message

        detail = [
            {"type": e["type"], "loc": ["body", *e["loc"]], "msg": plain_message(e)}
            for e in exc.errors()
        ]
        return DirectReply(422, {"detail": detail})
    if isinstance(exc, DomainError):
        return DirectReply(exc.status_code, {"detail": exc.detail, **exc.body}, exc.headers)
    if isinstance(exc, StorageError):
        return DirectReply(503, storage_unavailable(exc))
    if isinstance(exc, UnstorableValueError | InvalidCursorError):
        where = ["body"] if isinstance(exc, UnstorableValueError) else ["query", "cursor"]
        msg = f"cannot be stored: {exc}" if isinstance(exc, UnstorableValueError) else str(exc)
        return DirectReply(422, {"detail": [{"type": "value_error", "loc": where, "msg": msg}]})
    return None
