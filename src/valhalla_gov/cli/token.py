"""``valhalla token ...``: API tokens, on a data dir or on a server (owner
credential or token); the owner credential's rotation; sign-in links for the page."""

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
from .render import WideOption, valid_text

# Its help is in cli/__init__.py (GROUPS), shown without importing this module.
token_app = App(rich_markup_mode=None, no_args_is_help=True)
SCOPE_NAMES = ("viewer", "operator", "owner")
# Where a link made on the data dir points: `valhalla serve`'s default address.
LOCAL_PAGE = "http://127.0.0.1:8000"
KIND_SHOWN = {
    "token": "token",
    "page": "page sign-in",
    "owner_credential": "owner credential (owner.token)",
}


# auth.models.TOKEN_NAME_PATTERN, written out so that a bad name is refused
# before pydantic loads (a test keeps the two equal).
TOKEN_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # noqa: S105 - a name pattern
TOKEN_NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"  # noqa: S105 - words


def _scopes(value: str) -> list[str]:
    """The scopes in any case, or a usage error in words."""
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = [n for n in names if n not in SCOPE_NAMES]
    if not names or unknown:
        raise CliError(
            f"error: unknown scopes in --scopes {value!r}: choose from viewer, operator, owner "
            "(several with commas, e.g. viewer,operator)",
            USAGE,
        )
    return names


def _token_name(name: str, *, flag: str = "--name") -> str:
    import re

    if not re.fullmatch(TOKEN_NAME, name):
        raise CliError(
            f"error: {flag} {name!r} is not a token name: use {TOKEN_NAME_RULE} (e.g. phone)",
            USAGE,
        )
    return name


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

    with reported():
        body = {"name": _token_name(name), "scopes": _scopes(scopes)}
    with reported(), open_service(data_dir, url, token) as service:
        created = service.post(TokenCreated, "/core/tokens", body)
    if as_json:
        typer.echo(created.model_dump_json(indent=2))
        return
    typer.echo(f"created token {created.name!r} with scopes {', '.join(created.scopes)}.")
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
    wide: WideOption = False,
) -> None:
    """List tokens (names, scopes, created, last used; never the tokens)."""
    from ..auth.models import TokenList
    from .render import Column, cell, short_time, show, table

    with reported(), open_service(data_dir, url, token) as service:
        tokens = service.get(TokenList, "/core/tokens").root
    if as_json:
        typer.echo(json.dumps([t.model_dump() for t in tokens], indent=2))
        return
    if not tokens:
        typer.echo("no tokens yet (`valhalla init` or `valhalla serve` makes the owner credential)")
        return
    grid = table(
        "name",
        Column("kind", wrap=True),
        Column("scopes", wrap=True),
        "created (UTC)",
        "last used (UTC)",
    )
    for t in tokens:
        grid.add_row(
            cell(t.name),
            KIND_SHOWN.get(t.kind, t.kind),
            ", ".join(t.scopes),
            short_time(t.created_at_utc, zone=False),
            short_time(t.last_used_at_utc, zone=False),
        )
    show(grid, wide=wide)


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

    with reported():
        _token_name(name, flag="NAME")
    with reported(), open_service(data_dir, url, token) as service:
        # An unknown name is refused (exit 1), as a conflict would be.
        path = f"/core/tokens/{quote(name, safe='')}"
        service.call(TokenInfo, "DELETE", path, exit_codes={404: REFUSED})
    typer.echo(f"revoked token {name!r}")


@token_app.command("rotate-owner")
def token_rotate_owner(data_dir: DataDirOption = None) -> None:
    """Replace the owner credential (owner.token in the data dir): the old one
    stops working at once, everywhere. Run it on the server's machine."""
    from ..auth.owner_file import owner_file
    from ..auth.service import LOCAL_ACTOR, rotate_owner_credential
    from ..compose import open_store
    from ..errors import DomainError
    from ..storage.errors import StorageError
    from ..storage.json_store import ensure_private_dir
    from ..timeutil import utc_now
    from .local import check_data_dir, check_dir, load_settings

    with reported():
        settings = load_settings(data_dir)
        check_data_dir(settings, flag=data_dir is not None)
        # On SQL the data dir holds the credential's file: it must exist.
        check_dir(settings.data_dir, flag=data_dir is not None)
        try:
            ensure_private_dir(settings.data_dir)
            store = open_store(settings)
        except StorageError as exc:
            raise CliError(f"error: {exc}") from None
        except Exception as exc:
            raise _database_error(settings.database_url or "", exc) from None
        try:
            rotate_owner_credential(
                store=store, data_dir=settings.data_dir, actor=LOCAL_ACTOR, clock=utc_now
            )
        except (StorageError, DomainError) as exc:
            said = exc.detail if isinstance(exc, DomainError) else str(exc)
            raise CliError(f"refused: {said}") from None
        finally:
            close = getattr(store, "close", None)  # the SQL store's pool
            if callable(close):
                close()
    typer.echo(
        f"rotated the owner credential: {owner_file(settings.data_dir.resolve())} holds the "
        "new one; the old one no longer works (pages signed in with a link keep working)"
    )


def _database_error(url: str, exc: Exception) -> CliError | Exception:
    """A database that is down or behind its migrations, as one line."""
    from sqlalchemy.exc import SQLAlchemyError

    from ..storage.sql_backend import SchemaOutOfDateError, redact

    if not isinstance(exc, SchemaOutOfDateError | SQLAlchemyError):
        return exc
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return CliError(f"error: {redact(url)}: {first}")


@token_app.command("link")
def token_link(
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a sign-in link for the GO page: it works once, for 15 minutes. With
    --url the link points at that server; otherwise at http://127.0.0.1:8000."""
    from ..auth.models import SigninLink

    with reported(), open_service(data_dir, url, token) as service:
        link = service.call(SigninLink, "POST", "/core/auth/links")
        base = service.where if not service.local else LOCAL_PAGE
    address = f"{base}/#signin={link.code}"
    if as_json:
        typer.echo(json.dumps({"link": address, **link.model_dump()}, indent=2))
        return
    typer.echo(f"Open this link in your browser (once, before {link.expires_at_utc}):")
    if service.local:
        typer.echo(
            f"(if the server listens elsewhere, open its address followed by /#signin={link.code})"
        )
    typer.echo(address)
