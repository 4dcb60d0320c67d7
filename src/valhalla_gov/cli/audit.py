"""``valhalla audit ...``: the hash-chained audit log."""

from __future__ import annotations

import json
from itertools import islice
from typing import Annotated

import typer

from .common import DataDirOption, JsonOption
from .remote import PAGE_MAX, TokenOption, UrlOption, iter_events, open_backend, reported
from .render import cell, print_json, short_time, show, table, valid_text

audit_app = typer.Typer(
    help="The audit log: every state change, in a SHA-256 hash chain.", no_args_is_help=True
)
PAYLOAD_WIDTH = 120


def _payload(payload: object) -> str:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= PAYLOAD_WIDTH else text[: PAYLOAD_WIDTH - 3] + "..."


@audit_app.command("tail")
def audit_tail(
    lines: Annotated[
        int, typer.Option("-n", "--lines", min=1, help="How many of the newest events.")
    ] = 20,
    event: Annotated[
        str | None,
        typer.Option(
            callback=valid_text,
            help="Only this event type, e.g. GO_SESSION_START.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The newest N events, oldest of them first (as `tail` prints a file)."""
    with reported(), open_backend(data_dir, url, token) as backend:
        newest = list(
            islice(iter_events(backend, event=event, page_size=min(lines, PAGE_MAX)), lines)
        )
    events = list(reversed(newest))
    if as_json:
        print_json(events)
        return
    if not events:
        typer.echo("no audit events" + (f" of type {event}" if event else ""))
        return
    grid = table("seq", "time (UTC)", "event", "actor")
    grid.add_column("payload", overflow="fold")
    for e in events:
        grid.add_row(
            "-" if e.seq is None else str(e.seq),
            short_time(e.ts_utc),
            e.event,
            cell(e.actor),
            cell(_payload(e.payload)),
        )
    show(grid)


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Walk the whole hash chain; exit 1 if a line was edited, dropped or reordered."""
    with reported(), open_backend(data_dir, url, token) as backend:
        result = backend.verify()
    if as_json:
        print_json(result)
    elif result.ok:
        typer.echo(
            f"audit chain OK: {result.events} chained events verified"
            f", {result.legacy_events} legacy lines before the chain"
        )
    else:
        typer.echo(
            f"audit chain BROKEN at seq {result.first_bad_seq}: {result.detail}\n"
            f"every event before seq {result.first_bad_seq} verified ({result.events} events, "
            f"{result.legacy_events} legacy lines); compare audit.log with a backup from there on"
        )
    if not result.ok:
        raise typer.Exit(1)
