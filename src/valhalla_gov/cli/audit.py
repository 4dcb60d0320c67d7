"""``valhalla audit ...``: the hash-chained audit log."""

from __future__ import annotations

import json
from itertools import islice
from typing import Annotated

import typer

from .client import (
    PAGE_MAX,
    USAGE,
    CliError,
    DataDirOption,
    JsonOption,
    TokenOption,
    UrlOption,
    iter_pages,
    open_service,
    plural,
    reported,
)
from .helpstyle import App
from .render import Column, WideOption, cell, print_json, short_time, show, table, valid_text

# Its help is in cli/__init__.py (GROUPS), shown without importing this module.
audit_app = App(rich_markup_mode=None, no_args_is_help=True)
PAYLOAD_WIDTH = 120


def _payload(payload: object, *, whole: bool = False) -> str:
    # Spaced separators: a table wraps the payload between its items, never
    # inside a value's word.
    text = json.dumps(payload, ensure_ascii=False, separators=(", ", ": "), sort_keys=True)
    if whole or len(text) <= PAYLOAD_WIDTH:
        return text
    # Cut between words, as the table wraps it (--wide shows it whole).
    cut = text.rfind(" ", 0, PAYLOAD_WIDTH - 4)
    return text[: cut if cut > 0 else PAYLOAD_WIDTH - 4] + " ..."


@audit_app.command("tail")
def audit_tail(
    lines: Annotated[
        int,
        typer.Option("-n", "--lines", min=1, metavar="N", help="How many of the newest events."),
    ] = 20,
    event: Annotated[
        str | None,
        typer.Option(
            callback=valid_text,
            metavar="EVENT",
            help="Only this event type, e.g. GO_SESSION_START.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    wide: WideOption = False,
) -> None:
    """The newest N events, oldest of them first (as `tail` prints a file)."""
    from ..audit.models import AuditEvent, AuditPage

    with reported(), open_service(data_dir, url, token) as service:
        pages = iter_pages(
            service, AuditPage, "/core/audit/events", limit=min(lines, PAGE_MAX), event=event
        )
        newest: list[AuditEvent] = list(islice(pages, lines))
    events = list(reversed(newest))
    if as_json:
        print_json(events)
        return
    if not events:
        typer.echo("no audit events" + (f" of type {event}" if event else ""))
        return
    grid = table(Column("seq", right=True), "time (UTC)", "event", "actor")
    grid.add_column(Column("payload", wrap=True))
    for e in events:
        grid.add_row(
            "-" if e.seq is None else str(e.seq),
            short_time(e.ts_utc, zone=False),
            e.event,
            cell(e.actor),
            cell(_payload(e.payload, whole=wide)),
        )
    show(grid, wide=wide)


# audit.service.ANCHOR_PATTERN, written out (a test keeps the two equal).
ANCHOR = r"^[1-9][0-9]{0,17}:[0-9a-f]{64}$"


def _anchor(value: str | None) -> str | None:
    import re

    if value is None:
        return None
    text = value.strip()
    if not re.fullmatch(ANCHOR, text):
        raise CliError(
            f"error: --anchor {value!r} is not a chain head: pass it as `valhalla audit head` "
            "printed it, the event's number, a colon and its 64-character hash (e.g. 42:9f86d0...)",
            USAGE,
        )
    return text


@audit_app.command("verify")
def audit_verify(
    anchor: Annotated[
        str | None,
        typer.Option(
            metavar="SEQ:HASH",
            help="A head printed earlier by `valhalla audit head` and kept apart from the "
            "log: fails if the log no longer holds it (a cut tail).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Walk the whole hash chain; exit 1 if a line was edited, dropped or reordered,
    or (with --anchor) cut from the tail."""
    from ..audit.models import AuditVerifyResult

    with reported():
        anchor = _anchor(anchor)
    with reported(), open_service(data_dir, url, token) as service:
        result = service.get(AuditVerifyResult, "/core/audit/verify", anchor=anchor)
    if as_json:
        print_json(result)
    elif result.ok:
        typer.echo(
            f"audit chain OK: {plural(result.events, 'chained event')} verified"
            f", {plural(result.legacy_events, 'legacy line')} before the chain"
            + (f"; anchor {anchor} found" if anchor else "")
        )
    else:
        typer.echo(
            f"audit chain BROKEN at seq {result.first_bad_seq}: {result.detail}\n"
            f"every event before seq {result.first_bad_seq} verified "
            f"({plural(result.events, 'event')}, {plural(result.legacy_events, 'legacy line')}); "
            "compare audit.log with a backup from there on"
        )
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("head")
def audit_head(
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the chain head as SEQ:HASH. Keep it apart from the log (a backup, a
    ticket, monitoring) and check it later with `valhalla audit verify --anchor`."""
    from ..audit.models import AuditHead

    with reported(), open_service(data_dir, url, token) as service:
        head = service.get(AuditHead, "/core/audit/head")
    if as_json:
        print_json(head)
    elif head.anchor is None:
        typer.echo("no chained audit events yet")
    else:
        typer.echo(head.anchor)
