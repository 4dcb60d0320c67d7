"""Token rules: create, list, revoke, authenticate.

Tokens are random strings shown once; only their SHA-256 is stored (in the
``tokens`` document). Lookups compare digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import threading
import time

from ..audit.service import log_event
from ..errors import ConflictError, InvalidInputError, NotFoundError, UnauthorizedError
from ..observability.metrics import BOOKKEEPING_FAILURES
from ..storage.errors import StorageUnavailableError
from ..storage.protocol import Store
from ..timeutil import Clock, iso_z
from .models import SCOPES, TOKEN_NAME_PATTERN, Identity, Scope, TokenInfo, TokenRecord
from .store import load_tokens, read_tokens, write_tokens

log = logging.getLogger(__name__)

TOKEN_PREFIX = "vgo_"  # noqa: S105 - a public prefix
LOCAL_ACTOR = "local"  # who acts on a data dir directly, or from loopback in protected mode
LOCAL_OWNER = Identity(name=LOCAL_ACTOR, scopes=["owner"], via="local")
# last_used_at is written at most this often per token and process, so a busy
# client does not turn every read into a durable write.
LAST_USED_RESOLUTION_S = 60.0
CREATE_HINT = "create one on the server with: valhalla token create --name NAME --scopes owner"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_scopes(text: str) -> list[Scope]:
    """``"viewer,operator"`` → ``["viewer", "operator"]``; unknown names refused."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in SCOPES]
    if not names or unknown:
        raise InvalidInputError(
            f"unknown scopes {unknown or [text]}; choose from {', '.join(SCOPES)}"
        )
    return [s for s in SCOPES if s in names]


def create_token(
    *, store: Store, name: str, scopes: list[Scope], actor: str, clock: Clock
) -> tuple[TokenInfo, str]:
    """Create a token; returns its info and the token itself (shown once)."""
    if not re.match(TOKEN_NAME_PATTERN, name):
        raise InvalidInputError(
            f"invalid token name {name!r}: letters, digits, '.', '_' or '-', up to 64"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.transaction() as txn:
        tokens = read_tokens(txn)
        if any(t.name == name for t in tokens):
            raise ConflictError(f"a token named {name!r} exists; revoke it first")
        record = TokenRecord(
            name=name, scopes=scopes, sha256=hash_token(token), created_at_utc=iso_z(clock())
        )
        write_tokens(txn, [*tokens, record])
        log_event(
            txn,
            event="TOKEN_CREATE",
            payload={"name": name, "scopes": list(scopes)},
            actor=actor,
            clock=clock,
        )
    return _info(record), token


def _info(record: TokenRecord) -> TokenInfo:
    return TokenInfo(
        name=record.name,
        scopes=record.scopes,
        created_at_utc=record.created_at_utc,
        last_used_at_utc=record.last_used_at_utc,
    )


def list_tokens(*, store: Store) -> list[TokenInfo]:
    return [_info(t) for t in load_tokens(store=store)]


def revoke_token(*, store: Store, name: str, actor: str, clock: Clock) -> TokenInfo:
    """Revoke a token by name; returns what it was."""
    with store.transaction() as txn:
        tokens = read_tokens(txn)
        gone = [t for t in tokens if t.name == name]
        if not gone:
            raise NotFoundError(f"no token named {name!r}")
        write_tokens(txn, [t for t in tokens if t.name != name])
        log_event(txn, event="TOKEN_REVOKE", payload={"name": name}, actor=actor, clock=clock)
    return _info(gone[0])


_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host in _LOOPBACK_NAMES:  # the usual spellings, without parsing an address
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Turns a request's Authorization header and client address into an
    Identity, and remembers when each token was last used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_touch: dict[str, float] = {}

    def authenticate(
        self, *, store: Store, clock: Clock, authorization: str | None, client_host: str | None
    ) -> Identity:
        tokens = load_tokens(store=store)
        if authorization is None:
            if not tokens:
                if is_loopback(client_host):
                    return LOCAL_OWNER
                raise UnauthorizedError(
                    f"this server has no API token yet, so only local clients are served; "
                    f"{CREATE_HINT}"
                )
            raise UnauthorizedError("missing bearer token: send 'Authorization: Bearer <token>'")
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise UnauthorizedError("malformed Authorization header: expected 'Bearer <token>'")
        digest = hash_token(credential.strip())
        match: TokenRecord | None = None
        for record in tokens:  # every record compared, in constant time each
            if hmac.compare_digest(record.sha256, digest):
                match = record
        if match is None:
            raise UnauthorizedError("invalid or revoked token", error="invalid_token")
        self._touch(store, clock, match.name)
        return Identity(name=match.name, scopes=match.scopes, via="token")

    def _touch(self, store: Store, clock: Clock, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            before = self._last_touch.get(name, -LAST_USED_RESOLUTION_S)
            if now - before < LAST_USED_RESOLUTION_S:
                return
            self._last_touch[name] = now
        try:
            with store.transaction() as txn:
                tokens = read_tokens(txn)
                stamped = [
                    t.model_copy(update={"last_used_at_utc": iso_z(clock())})
                    if t.name == name
                    else t
                    for t in tokens
                ]
                write_tokens(txn, stamped)
        except StorageUnavailableError as exc:
            # Bookkeeping, not the request's work: a full disk or a read-only
            # data dir must not fail a read. The stamp waits for the next
            # resolution interval; the failure is logged and counted.
            log.warning("could not record when token %r was last used: %s", name, exc)
            BOOKKEEPING_FAILURES.labels(what="token_last_used").inc()
        except BaseException:
            # Not attempted (the store wants this run moved off the event
            # loop, see Store.run_cached) or interrupted: the next call stamps.
            with self._lock:
                if self._last_touch.get(name) == now:
                    self._last_touch[name] = before
            raise


def protected_mode(*, store: Store) -> bool:
    return not load_tokens(store=store)
