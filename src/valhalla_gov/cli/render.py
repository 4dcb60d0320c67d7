"""Output helpers shared by the command groups: JSON for scripts, rich tables
and plain lines for people, and the ``--since``/``--until`` time options."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .terminal import safe_json

if TYPE_CHECKING:  # rich and pydantic load when a command prints, not for --help
    from pydantic import BaseModel
    from rich.table import Table
    from rich.text import Text


def valid_text(value: str | None) -> str | None:
    """Parameter callback: text that can be stored. Bytes that are not UTF-8 on
    the command line arrive as lone surrogates, which no file can hold."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise typer.BadParameter(
            "is not valid UTF-8 text; check the terminal's encoding (LANG, LC_ALL)"
        ) from None
    return value


def note_text(value: str | None) -> str | None:
    """Parameter callback for notes and reasons: valid text, at most MAX_TEXT."""
    from ..constants import MAX_TEXT

    value = valid_text(value)
    if value is not None and len(value) > MAX_TEXT:
        raise typer.BadParameter(f"is {len(value)} characters; at most {MAX_TEXT} are kept")
    return value


def parse_time(text: str) -> datetime:
    """ISO-8601, with or without ``Z`` or an offset (no zone means UTC); a
    date alone is midnight UTC at its start."""
    from ..timeutil import parse_iso

    try:
        return parse_iso(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO-8601 time; use e.g. 2026-01-31, 2026-01-31T09:00:00Z "
            "or 2026-01-31T10:00:00+01:00"
        ) from None


SinceOption = Annotated[
    datetime | None,
    typer.Option(
        "--since",
        parser=parse_time,
        metavar="ISO-8601",
        help="Only sessions that started at or after this time (UTC unless a zone is given).",
        show_default=False,
    ),
]
UntilOption = Annotated[
    datetime | None,
    typer.Option(
        "--until",
        parser=parse_time,
        metavar="ISO-8601",
        help="Only sessions that started at or before this time (UTC unless a zone is given).",
        show_default=False,
    ),
]


def check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since > until:
        raise typer.BadParameter("--since is later than --until", param_hint="'--since'")


def print_json(value: BaseModel | list[Any] | dict[str, Any]) -> None:
    """Machine-readable output, alone on stdout."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        typer.echo(safe_json(value.model_dump_json(indent=2)))
        return
    typer.echo(safe_json(json.dumps(_plain(value), indent=2, ensure_ascii=False)))


def _plain(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def show(table: Table) -> None:
    from rich.console import Console

    Console(highlight=False).print(table)


def table(*columns: str, title: str | None = None) -> Table:
    from rich.table import Table

    return Table(*columns, title=title, title_justify="left")


def cell(value: object) -> Text:
    """User text shown literally: brackets in notes are not rich markup."""
    from rich.text import Text

    if value is None or value == "":
        return Text("-")
    return Text(str(value))


def short_time(iso: str | None) -> str:
    """``2026-01-31T09:00:00.123456Z`` → ``2026-01-31 09:00:00Z``."""
    if not iso:
        return "-"
    from ..timeutil import parse_iso

    try:
        moment = parse_iso(iso)
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
