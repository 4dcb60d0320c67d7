"""``valhalla token ...``: API tokens, on a data dir or on a server (owner token)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .client import (
    REFUSED,
    USAGE,
    CliError,
    DataDirOption,
    JsonOption,
    TokenOption,
    UrlOption,
    open_service,
    reported,
)
from .helpstyle import App
from .render import valid_text

# Its help is in cli/__init__.py (GROUPS), shown without importing this module.
token_app = App(rich_markup_mode=None, no_args_is_help=True)
SCOPE_NAMES = ("viewer", "operator", "owner")


def _scopes(value: str) -> list[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [n for n in names if n not in SCOPE_NAMES]
    if not names or unknown:
        raise CliError(
            f"refused: unknown scopes {unknown or [value]}; choose from {', '.join(SCOPE_NAMES)}",
            USAGE,
        )
    return names


@token_app.command("create")
def token_create(
    name: Annotated[
        str,
        typer.Option(
            callback=valid_text,
            metavar="NAME",
            help="A name for who or what uses the token.",
            show_default=False,
        ),
    ],
    scopes: Annotated[
        str,
        typer.Option(
            metavar="SCOPES",
            help="Comma-separated: viewer, operator, owner.",
            show_default=False,
        ),
    ],
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a token. It is printed once, alone on the last line; only its hash is kept."""
    from ..auth.models import TokenCreated

    with reported(), open_service(data_dir, url, token) as service:
        body = {"name": name, "scopes": _scopes(scopes)}
        created = service.post(TokenCreated, "/core/tokens", body)
    if as_json:
        typer.echo(created.model_dump_json(indent=2))
        return
    typer.echo(f"created token {created.name!r} with scopes {', '.join(created.scopes)}.")
    if created.ended_protected_mode:
        typer.echo(
            "Protected mode is over: from now on every client, local ones included, needs a token."
        )
    typer.echo("Send it as a header, e.g.:")
    typer.echo("  curl -H 'Authorization: Bearer <token>' http://127.0.0.1:8000/core/go/session")
    typer.echo("It is shown only now:")
    typer.echo(created.token)


@token_app.command("list")
def token_list(
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List tokens (names, scopes, created, last used; never the tokens)."""
    from ..auth.models import TokenList
    from .render import cell, short_time, show, table

    with reported(), open_service(data_dir, url, token) as service:
        tokens = service.get(TokenList, "/core/tokens").root
    if as_json:
        typer.echo(json.dumps([t.model_dump() for t in tokens], indent=2))
        return
    if not tokens:
        typer.echo("no tokens: loopback clients act as the local owner (protected mode)")
        return
    grid = table("name", "scopes", "created (UTC)", "last used (UTC)")
    for t in tokens:
        grid.add_row(
            cell(t.name),
            ", ".join(t.scopes),
            short_time(t.created_at_utc),
            short_time(t.last_used_at_utc),
        )
    show(grid)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[
        str, typer.Argument(callback=valid_text, metavar="NAME", help="The token's name.")
    ],
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Revoke a token by name; it stops working at once."""
    from urllib.parse import quote

    from ..auth.models import TokenInfo

    with reported(), open_service(data_dir, url, token) as service:
        # An unknown name is refused (exit 1), as a conflict would be.
        path = f"/core/tokens/{quote(name, safe='')}"
        service.call(TokenInfo, "DELETE", path, exit_codes={404: REFUSED})
    typer.echo(f"revoked token {name!r}")
