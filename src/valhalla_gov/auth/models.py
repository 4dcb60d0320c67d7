"""Auth schemas: scopes, stored token records, sign-in codes, the acting identity."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

Scope = Literal["viewer", "operator", "owner"]
# Each scope includes the ones below it.
SCOPE_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "owner": 2}
SCOPES: tuple[Scope, ...] = ("viewer", "operator", "owner")
TOKEN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # noqa: S105 - a name pattern
# token: made with `valhalla token create` / POST /core/tokens; page: made for
# the GO page by a sign-in link; owner_credential: the data dir's owner.token.
TokenKind = Literal["token", "page", "owner_credential"]
# Identity.via: a bearer token (any kind), or the operator at the data dir
# (a local command, in process: no HTTP client involved).
Via = Literal["token", "local"]


class TokenRecord(BaseModel):
    """What is stored for a token: never the token itself, only its SHA-256."""

    name: str = Field(pattern=TOKEN_NAME_PATTERN)
    scopes: list[Scope]
    sha256: str
    created_at_utc: str
    last_used_at_utc: str | None = None
    # Absent in records written before sign-in links and the owner credential.
    kind: TokenKind = "token"


class SigninCode(BaseModel):
    """A sign-in link's one-time code, stored as its SHA-256 until used or expired."""

    sha256: str
    created_at_utc: str
    expires_at_utc: str
    created_by: str


class TokenInfo(BaseModel):
    """A token as listed to operators (no hash)."""

    name: str = Field(description="The token's name: what the audit log records as actor.")
    scopes: list[Scope] = Field(description="What it may do: viewer, operator, owner.")
    created_at_utc: str = Field(description="When it was created (UTC, Z).")
    last_used_at_utc: str | None = Field(description="When it was last used; null if never.")
    kind: TokenKind = Field(
        default="token",
        description="token: created by an owner; page: made for the GO page by a sign-in "
        "link; owner_credential: the owner credential kept in the server's data dir.",
    )


class TokenList(RootModel[list[TokenInfo]]):
    """What ``GET /core/tokens`` answers."""


class TokenCreate(BaseModel):
    """A new token's name and scopes."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "phone", "scopes": ["operator"]}]}
    )

    name: str = Field(
        pattern=TOKEN_NAME_PATTERN,
        description="Who or what uses the token: letters, digits, '.', '_' or '-', up to 64.",
    )
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=3,
        description="viewer (every GET), operator (viewer + sessions and steps), "
        "owner (everything).",
    )


class TokenCreated(TokenInfo):
    """A token just created: ``token`` is shown here once and never again."""

    token: str = Field(description="Send it as 'Authorization: Bearer <token>'.")
    ended_protected_mode: bool = Field(
        default=False,
        description="Always false: there is no protected mode any more (every client needs "
        "a credential). Kept for clients written for earlier versions.",
    )


class SigninRequest(BaseModel):
    """The one-time code of a sign-in link (what follows ``#signin=``)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"code": "Xy3..."}]})

    code: str = Field(min_length=1, max_length=200, description="The code from the link.")


# What the page sends as a hello's nonce: 32 random bytes, in lower-case hex.
HELLO_NONCE_PATTERN = r"^[0-9a-f]{64}$"


class HelloRequest(BaseModel):
    """The page asks the server to prove it holds its token's hash."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "page-20260101-ab12", "nonce": "00" * 32}]},
    )

    name: str = Field(pattern=TOKEN_NAME_PATTERN, description="The name of the page's token.")
    nonce: str = Field(
        pattern=HELLO_NONCE_PATTERN,
        description="32 fresh random bytes in lower-case hex (64 characters).",
    )


class HelloProof(BaseModel):
    """The server's proof that it is the one that issued the token."""

    proof: str = Field(
        description="Hex HMAC-SHA256 of the nonce (its ASCII text), keyed with the 32 bytes "
        "of the token's SHA-256, which only the issuing server keeps."
    )


class SigninLink(BaseModel):
    """A new sign-in link's code: open ``<server>/#signin=<code>`` once, before it expires."""

    code: str = Field(description="The one-time code; shown here once.")
    expires_at_utc: str = Field(description="When the code stops working (UTC, Z).")


class Identity(BaseModel):
    name: str
    scopes: list[Scope]
    via: Via

    def allows(self, needed: Scope) -> bool:
        return max(SCOPE_RANK[s] for s in self.scopes) >= SCOPE_RANK[needed]


class WhoAmI(BaseModel):
    name: str = Field(description="Who the request acts as: the credential's name.")
    scopes: list[Scope] = Field(description="What it may do: viewer, operator, owner.")
    via: Via = Field(
        description="token: a bearer credential (a token, a page's sign-in or the owner "
        "credential); local: a command on the data dir itself."
    )
    protected_mode: bool = Field(
        default=False,
        description="Always false: there is no protected mode any more; an address grants "
        "nothing. Kept for clients written for earlier versions.",
    )
