"""Auth schemas: scopes, stored token records, the acting identity."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

Scope = Literal["viewer", "operator", "owner"]
# Each scope includes the ones below it.
SCOPE_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "owner": 2}
SCOPES: tuple[Scope, ...] = ("viewer", "operator", "owner")
TOKEN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # noqa: S105 - a name pattern


class TokenRecord(BaseModel):
    """What is stored for a token: never the token itself, only its SHA-256."""

    name: str = Field(pattern=TOKEN_NAME_PATTERN)
    scopes: list[Scope]
    sha256: str
    created_at_utc: str
    last_used_at_utc: str | None = None


class TokenInfo(BaseModel):
    """A token as listed to operators (no hash)."""

    name: str = Field(description="The token's name: what the audit log records as actor.")
    scopes: list[Scope] = Field(description="What it may do: viewer, operator, owner.")
    created_at_utc: str = Field(description="When it was created (UTC, Z).")
    last_used_at_utc: str | None = Field(description="When it was last used; null if never.")


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
        description="True for the first token: from now on every client needs a token."
    )


class Identity(BaseModel):
    name: str
    scopes: list[Scope]
    via: Literal["token", "local"]

    def allows(self, needed: Scope) -> bool:
        return max(SCOPE_RANK[s] for s in self.scopes) >= SCOPE_RANK[needed]


class WhoAmI(BaseModel):
    name: str = Field(description="Who the request acts as (a token name, or local).")
    scopes: list[Scope] = Field(description="What it may do: viewer, operator, owner.")
    via: Literal["token", "local"] = Field(
        description="token: a bearer token; local: the local owner (a loopback client while no "
        "token exists)."
    )
    protected_mode: bool = Field(
        description="True while no token exists: loopback clients act as the local owner."
    )
