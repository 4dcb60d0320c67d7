"""``valhalla sessions export``: ended sessions for a spreadsheet or a script."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TextIO

import typer

from .client import (
    CliError,
    DataDirOption,
    TokenOption,
    UrlOption,
    fail,
    open_service,
    plural,
    reported,
)
from .go import end_band, end_status, iter_sessions
from .helpstyle import App
from .insights import sessions_report

if TYPE_CHECKING:
    from ..go.session_models import GoSession
from .render import SinceOption, UntilOption, check_range

# Its help is in cli/__init__.py (GROUPS), shown without importing this module.
sessions_app = App(rich_markup_mode=None, no_args_is_help=True)

COLUMNS = (
    "id",
    "started_at_utc",
    "ended_at_utc",
    "duration_seconds",
    "start_band",
    "start_status",
    "end_band",
    "end_status",
    "started_by",
    "ended_by",
    "start_notes",
    "end_notes",
    "steps_completed",
)
# A cell starting with one of these is a formula to a spreadsheet: a note such
# as "=HYPERLINK(...)" must stay text (CSV injection), so it gets a leading '.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _duration(session: GoSession) -> float | None:
    if session.duration_seconds is not None:
        return session.duration_seconds
    if session.started_at_utc and session.ended_at_utc:
        from ..timeutil import parse_iso

        # Sessions from the earlier implementation carry no duration.
        seconds = parse_iso(session.ended_at_utc) - parse_iso(session.started_at_utc)
        return round(seconds.total_seconds(), 6)
    return None


def export_row(session: GoSession) -> dict[str, Any]:
    """One session as a flat row. A session from the earlier implementation
    has only ``notes`` (the last ones given): they fill ``end_notes``."""
    legacy = session.start_notes is None and session.end_notes is None
    return {
        "id": session.id,
        "started_at_utc": session.started_at_utc,
        "ended_at_utc": session.ended_at_utc,
        "duration_seconds": _duration(session),
        "start_band": session.cone_band,
        "start_status": session.status,
        "end_band": end_band(session),
        "end_status": end_status(session),
        "started_by": session.started_by,
        "ended_by": session.ended_by,
        "start_notes": session.start_notes,
        "end_notes": session.notes if legacy else session.end_notes,
        "steps_completed": list(session.steps_completed),
    }


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = ";".join(str(v) for v in value)
    text = str(value)
    if isinstance(value, str) and text.startswith(FORMULA_START):
        return "'" + text
    return text


def write_csv(rows: list[dict[str, Any]], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_csv_cell(row[c]) for c in COLUMNS])


def write_json(rows: list[dict[str, Any]], out: TextIO) -> None:
    json.dump(rows, out, indent=2, ensure_ascii=False)
    out.write("\n")


@contextlib.contextmanager
def _destination(output: Path | None) -> Iterator[TextIO]:
    """stdout, or ``output`` written whole or not at all (a temp file beside
    it, fsync, rename): a failed export never leaves half a file."""
    if output is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    target = output.expanduser()
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        fail(CliError(f"cannot write {target}: {exc.strerror or exc}"))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@sessions_app.command("export")
def sessions_export(
    fmt: Annotated[
        Literal["csv", "json"],
        typer.Option(
            "--format",
            metavar="csv|json",
            help="csv (a header row, then one row a session) or json.",
        ),
    ] = "csv",
    since: SinceOption = None,
    until: UntilOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write to this file (replaced whole) instead of stdout.",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Every ended session that started in the range, oldest first, with its
    duration in seconds; steps completed are joined with ';' in CSV."""
    check_range(since, until)
    with reported(), open_service(data_dir, url, token) as service:
        # The history pages newest first; the export reads it all, then
        # writes oldest first, as a spreadsheet expects.
        rows = [export_row(s) for s in iter_sessions(service, since=since, until=until)]
    rows.reverse()
    buffer = io.StringIO(newline="")
    (write_csv if fmt == "csv" else write_json)(rows, buffer)
    try:
        with _destination(output) as out:
            out.write(buffer.getvalue())
    except OSError as exc:
        fail(CliError(f"cannot write {output}: {exc.strerror or exc}"))
    if output is not None:
        typer.echo(f"exported {plural(len(rows), 'session')} to {output}", err=True)


sessions_app.command("report")(sessions_report)
