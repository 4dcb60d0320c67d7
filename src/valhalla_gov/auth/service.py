"""Token rules: create, list, revoke, authenticate; the owner credential;
sign-in links.

Authority comes from a credential, never from an address. Tokens are random
strings shown once; only their SHA-256 is stored (in the ``tokens``
document), and lookups compare digests in constant time. Three kinds share
that list:

- **tokens** an owner creates (`valhalla token create`), for phones, people
  and engines;
- the **owner credential**, created with the data (`valhalla init` or the
  first `valhalla serve`) and kept in the data dir's ``owner.token``, readable
  by the data dir's account only. It acts as ``local``, the name the operator
  at the data dir has always had in the audit log;
- **page** tokens, each made for a browser by a one-time sign-in link the
  server prints (`valhalla token link` prints another).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path

from ..audit.service import log_event
from ..errors import ConflictError, InvalidInputError, NotFoundError, UnauthorizedError
from ..storage.errors import StorageUnavailableError
from ..storage.protocol import Store
from ..timeutil import Clock, iso_z, parse_iso
from .models import (
    TOKEN_NAME_PATTERN,
    Identity,
    Scope,
    SigninCode,
    SigninLink,
    TokenInfo,
    TokenRecord,
)
from .owner_file import OWNER_FILE, create_owner_token, read_owner_token, replace_owner_token
from .store import load_codes, load_tokens, read_codes, read_tokens, write_codes, write_tokens

log = logging.getLogger(__name__)

TOKEN_PREFIX = "vgo_"  # noqa: S105 - a public prefix
# Who acts on a data dir directly (a local command), and the owner
# credential's name: the same actor in the audit log either way.
LOCAL_ACTOR = "local"
# A local command, in process on the data dir: not a client of anything.
LOCAL_OWNER = Identity(name=LOCAL_ACTOR, scopes=["owner"], via="local")
# last_used_at is written at most this often per token and process, so a busy
# client does not turn every read into a durable write.
LAST_USED_RESOLUTION_S = 60.0
SIGNIN_TTL = timedelta(minutes=15)
# Unused codes kept at most (the oldest go first): the list stays small
# however often links are printed.
MAX_SIGNIN_CODES = 32
SIGNIN_HINT = (
    "on the server's machine, `valhalla token link` prints a sign-in link for the page; "
    "`valhalla token create` makes a token for other clients"
)


class OwnerCredential(Enum):
    """What :func:`ensure_owner_credential` found or did."""

    CREATED = "created"  # a new credential, file and record
    REGISTERED = "registered"  # the data dir's file, now known to the store
    PRESENT = "present"  # file and store agree
    ELSEWHERE = "elsewhere"  # the store knows one; this data dir has no file
    MISMATCH = "mismatch"  # this data dir's file is not the store's credential


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    *, store: Store, name: str, scopes: list[Scope], actor: str, clock: Clock
) -> tuple[TokenInfo, str]:
    """Create a token; returns its info and the token itself (shown once)."""
    if not re.match(TOKEN_NAME_PATTERN, name):
        raise InvalidInputError(
            f"invalid token name {name!r}: letters, digits, '.', '_' or '-', up to 64"
        )
    if name == LOCAL_ACTOR:
        raise ConflictError(
            f"{LOCAL_ACTOR!r} is the owner credential's name (the operator at the data dir); "
            "pick another"
        )
    token = new_token()
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
        kind=record.kind,
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
        if gone[0].kind == "owner_credential":
            raise ConflictError(
                "the owner credential is replaced, not revoked: run `valhalla token "
                "rotate-owner` on the server's machine"
            )
        write_tokens(txn, [t for t in tokens if t.name != name])
        log_event(txn, event="TOKEN_REVOKE", payload={"name": name}, actor=actor, clock=clock)
    return _info(gone[0])


# -- the owner credential ------------------------------------------------------------


def _owner_record(tokens: list[TokenRecord]) -> TokenRecord | None:
    return next((t for t in tokens if t.kind == "owner_credential"), None)


def ensure_owner_credential(*, store: Store, data_dir: Path, clock: Clock) -> OwnerCredential:
    """Make sure the owner credential exists (`valhalla init`, `valhalla serve`).

    Minted once: the record is written in the store's transaction (the data
    dir's lock, or the database's writer lock), the file with ``O_EXCL``, so
    of several processes starting at once exactly one creates it and the
    others find it. A data dir's file the store does not know yet (a crash
    between the two writes, or a new database) is registered as it is.
    """
    with store.transaction() as txn:
        # Read under the lock: a process that created it before us is seen.
        on_disk = read_owner_token(data_dir)
        tokens = read_tokens(txn)
        current = _owner_record(tokens)
        if current is not None:
            if on_disk is None:
                return OwnerCredential.ELSEWHERE
            same = hmac.compare_digest(current.sha256, hash_token(on_disk))
            return OwnerCredential.PRESENT if same else OwnerCredential.MISMATCH
        if any(t.name == LOCAL_ACTOR for t in tokens):
            raise ConflictError(
                f"a token named {LOCAL_ACTOR!r} exists, and that is the owner credential's "
                f"name: revoke it (`valhalla token revoke {LOCAL_ACTOR}`), then start again"
            )
        outcome = OwnerCredential.REGISTERED
        if on_disk is None:
            fresh = new_token()
            if create_owner_token(data_dir, fresh):
                on_disk, outcome = fresh, OwnerCredential.CREATED
            else:  # another process wrote it just now: that one is the credential
                on_disk = read_owner_token(data_dir)
                if on_disk is None:
                    raise StorageUnavailableError(
                        data_dir / OWNER_FILE, "appeared and vanished while being created"
                    )
        record = _owner_credential(on_disk, clock)
        # Not audited: it comes with the data (its creation time is in the
        # token list); its rotations are.
        write_tokens(txn, [*tokens, record])
    return outcome


def _owner_credential(token: str, clock: Clock) -> TokenRecord:
    """The record that makes ``token`` the owner credential (named ``local``)."""
    return TokenRecord(
        name=LOCAL_ACTOR,
        scopes=["owner"],
        sha256=hash_token(token),
        created_at_utc=iso_z(clock()),
        kind="owner_credential",
    )


def rotate_owner_credential(*, store: Store, data_dir: Path, actor: str, clock: Clock) -> None:
    """Replace the owner credential: the old one stops working at once, in
    every worker and replica; the data dir's file holds the new one. Unused
    sign-in links are withdrawn; page tokens stay (revoke them by name)."""
    fresh = new_token()
    with store.transaction() as txn:
        tokens = read_tokens(txn)
        rest = [t for t in tokens if t.kind != "owner_credential"]
        if any(t.name == LOCAL_ACTOR for t in rest):
            raise ConflictError(
                f"a token named {LOCAL_ACTOR!r} exists, and that is the owner credential's "
                f"name: revoke it (`valhalla token revoke {LOCAL_ACTOR}`) first"
            )
        write_tokens(txn, [*rest, _owner_credential(fresh, clock)])
        # A rotation answers a credential that may have leaked: the sign-in
        # links not used yet (one printed in a journal, say) go with it.
        withdrawn = len(read_codes(txn))
        write_codes(txn, [])
        log_event(
            txn,
            event="OWNER_CREDENTIAL_ROTATE",
            payload={"file": OWNER_FILE, "signin_links_withdrawn": withdrawn},
            actor=actor,
            clock=clock,
        )
        # Last, inside the transaction: if the file cannot be written, the
        # store keeps the old credential (the one the file still holds).
        replace_owner_token(data_dir, fresh)


# -- sign-in links ---------------------------------------------------------------------


def _expired(code: SigninCode, now: datetime) -> bool:
    return parse_iso(code.expires_at_utc) <= now


def create_signin_code(
    *, store: Store, actor: str, clock: Clock, ttl: timedelta = SIGNIN_TTL
) -> SigninLink:
    """A one-time code for a sign-in link (``<server>/#signin=<code>``). Only
    its SHA-256 is stored, where every worker and replica reads it."""
    code = secrets.token_urlsafe(32)
    now = clock()
    with store.transaction() as txn:
        live = [c for c in read_codes(txn) if not _expired(c, now)]
        entry = SigninCode(
            sha256=hash_token(code),
            created_at_utc=iso_z(now),
            expires_at_utc=iso_z(now + ttl),
            created_by=actor,
        )
        write_codes(txn, [*live[-(MAX_SIGNIN_CODES - 1) :], entry])
    return SigninLink(code=code, expires_at_utc=entry.expires_at_utc)


def _bad_code() -> UnauthorizedError:
    return UnauthorizedError(
        "this sign-in link is not valid: it was used already, it expired, or it was never "
        "issued. `valhalla token link` on the server's machine prints a new one",
        error="invalid_token",
    )


def exchange_signin_code(*, store: Store, code: str, clock: Clock) -> tuple[TokenInfo, str]:
    """Trade a sign-in code for a new owner-scope page token, once.

    The code is removed in the same transaction that creates the token, so
    of two exchanges of one code exactly one succeeds. Audited as
    ``SIGNIN_LINK_USED`` by the new token's name, naming who made the link.
    """
    digest = hash_token(code.strip())
    # A code never issued costs a read, not the writers' lock.
    if not _known(digest, load_codes(store=store)):
        raise _bad_code()
    token = new_token()
    now = clock()
    with store.transaction() as txn:
        codes = read_codes(txn)
        match = _known(digest, codes)
        if match is None or _expired(match, now):
            raise _bad_code()
        tokens = read_tokens(txn)
        name = _page_name(tokens, now)
        record = TokenRecord(
            name=name,
            scopes=["owner"],
            sha256=hash_token(token),
            created_at_utc=iso_z(now),
            kind="page",
        )
        write_codes(txn, [c for c in codes if c is not match and not _expired(c, now)])
        write_tokens(txn, [*tokens, record])
        log_event(
            txn,
            event="SIGNIN_LINK_USED",
            payload={"name": name, "scopes": ["owner"], "link_by": match.created_by},
            actor=name,
            clock=clock,
        )
    return _info(record), token


def _known(digest: str, codes: list[SigninCode]) -> SigninCode | None:
    match: SigninCode | None = None
    for code in codes:  # every one compared, in constant time each
        if hmac.compare_digest(code.sha256, digest):
            match = code
    return match


def _page_name(tokens: list[TokenRecord], now: datetime) -> str:
    taken = {t.name for t in tokens}
    while True:
        name = f"page-{now:%Y%m%d}-{secrets.token_hex(2)}"
        if name not in taken:
            return name


# -- the page's hello: the server proves itself -------------------------------------

# Answers for names the store does not know are computed too, under this key
# that nothing else uses, so a known and an unknown name cost the same work.
_DECOY_KEY = secrets.token_bytes(32)


def prove_server(*, store: Store, name: str, nonce: str) -> str:
    """HMAC-SHA256(key = the stored SHA-256 of token ``name``, msg = ``nonce``), hex.

    The page knows its token, so it can compute the same; whoever listens on
    the server's port without being the server knows neither the token nor
    its hash. Read only: nothing is written or audited. An unknown or revoked
    name is refused (401): names are not secrets (the page and the token
    list show them), and the page needs to tell "revoked" from "impostor".
    """
    record = next((t for t in load_tokens(store=store) if t.name == name), None)
    key = bytes.fromhex(record.sha256) if record is not None else _DECOY_KEY
    proof = hmac.new(key, nonce.encode("ascii"), hashlib.sha256).hexdigest()
    if record is None:
        raise UnauthorizedError(f"no token named {name!r}: revoked, or never issued")
    return proof


# -- authentication ---------------------------------------------------------------------


class Authenticator:
    """Turns a request's Authorization header into an Identity, and
    remembers when each token was last used. The address a request comes
    from plays no part."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_touch: dict[str, float] = {}

    def authenticate(self, *, store: Store, clock: Clock, authorization: str | None) -> Identity:
        if authorization is None:
            raise UnauthorizedError(
                f"missing credential: send 'Authorization: Bearer <token>'; {SIGNIN_HINT}"
            )
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise UnauthorizedError("malformed Authorization header: expected 'Bearer <token>'")
        digest = hash_token(credential.strip())
        match: TokenRecord | None = None
        for record in load_tokens(store=store):  # every record compared, in constant time each
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
            # Imported here: prometheus_client is a fifth of a local command's start-up.
            from ..observability.metrics import BOOKKEEPING_FAILURES

            BOOKKEEPING_FAILURES.labels(what="token_last_used").inc()
        except BaseException:
            # Interrupted: the next call stamps.
            with self._lock:
                if self._last_touch.get(name) == now:
                    self._last_touch[name] = before
            raise
