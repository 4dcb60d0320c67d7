"""``valhalla token ...``: API tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from ..auth.service import LOCAL_ACTOR
from .common import DataDirOption, JsonOption, local_context

token_app = typer.Typer(help="API tokens: create, list, revoke.")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="A name for who or what uses the token.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: viewer, operator, owner.")],
    data_dir: DataDirOption = None,
) -> None:
    """Create a token. It is printed once, alone on the last line; only its hash is kept."""
    from ..auth.service import create_token, parse_scopes
    from ..errors import DomainError

    ctx = local_context(data_dir)
    try:
        info, token = create_token(
            store=ctx.store,
            name=name,
            scopes=parse_scopes(scopes),
            actor=LOCAL_ACTOR,
            clock=ctx.clock,
        )
    except DomainError as exc:
        typer.secho(f"refused: {exc.detail}", fg="red", err=True)
        raise typer.Exit(1 if exc.status_code == 409 else 2) from None
    typer.echo(f"created token {info.name!r} with scopes {', '.join(info.scopes)}.")
    typer.echo("Send it as 'Authorization: Bearer <token>'. It is shown only now:")
    typer.echo(token)


@token_app.command("list")
def token_list(
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """List tokens (names, scopes, created, last used; never the tokens)."""
    import json

    from rich.console import Console
    from rich.table import Table

    from ..auth.service import list_tokens

    tokens = list_tokens(store=local_context(data_dir).store)
    if as_json:
        typer.echo(json.dumps([t.model_dump() for t in tokens], indent=2))
        return
    if not tokens:
        typer.echo("no tokens: loopback clients act as the local owner (protected mode)")
        return
    table = Table("name", "scopes", "created", "last used")
    for t in tokens:
        table.add_row(t.name, ", ".join(t.scopes), t.created_at_utc, t.last_used_at_utc or "-")
    Console().print(table)


@token_app.command("revoke")
def token_revoke(name: str, data_dir: DataDirOption = None) -> None:
    """Revoke a token by name; it stops working at once."""
    from ..auth.service import revoke_token
    from ..errors import NotFoundError

    ctx = local_context(data_dir)
    try:
        revoke_token(store=ctx.store, name=name, actor=LOCAL_ACTOR, clock=ctx.clock)
    except NotFoundError as exc:
        typer.secho(f"refused: {exc.detail}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked token {name!r}")
