"""``valhalla sessions report``: the history summed up per day, week or month."""

from __future__ import annotations

import csv
import sys
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from .client import DataDirOption, TokenOption, UrlOption, open_service, reported
from .render import (
    Column,
    SinceOption,
    UntilOption,
    WideOption,
    cell,
    check_range,
    human_duration,
    print_json,
    show,
    table,
)

# The insights' keys, written out so `--help` imports no model; a test checks
# they match valhalla_gov.insights.service.
BANDS = ("A", "B", "C", "D")
STATUSES = ("green", "yellow", "red")
CSV_COLUMNS = (
    "start",
    "sessions",
    "total_seconds",
    "median_seconds",
    "steps_completed",
    *(f"band_{b}" for b in BANDS),
    *(f"status_{s}" for s in STATUSES),
)


if TYPE_CHECKING:
    from ..insights.models import Insights


def write_csv(report: Insights) -> None:
    # Newline line ends: stdout escapes carriage returns (terminal safety), and
    # every cell here is a number or a timestamp, so nothing needs CRLF.
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for item in report.items:
        writer.writerow(
            [
                item.start,
                item.sessions,
                item.total_seconds,
                "" if item.median_seconds is None else item.median_seconds,
                item.steps_completed,
                *(item.bands.get(b, 0) for b in BANDS),
                *(item.statuses.get(s, 0) for s in STATUSES),
            ]
        )


def _counts(counts: dict[str, int], keys: tuple[str, ...]) -> str:
    """``B 2 · C 1``: the keys with sessions, in their order, then any others."""
    order = [*keys, *sorted(k for k in counts if k not in keys)]
    return " · ".join(f"{k} {counts[k]}" for k in order if counts.get(k)) or "-"


def sessions_report(
    since: SinceOption = None,
    until: UntilOption = None,
    bucket: Annotated[
        Literal["day", "week", "month"],
        typer.Option("--bucket", help="Sum up per day, week (from Monday) or month, in UTC."),
    ] = "week",
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV: a header row, one row a bucket.")] = (
        False
    ),
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON.")] = False,
    wide: WideOption = False,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Sessions, total and median duration, steps done, and the band and
    health at each start, per bucket (oldest first). Without --since: the last
    12 buckets. The same figures as GET /core/go/insights."""
    check_range(since, until)
    if as_csv and as_json:
        raise typer.BadParameter("choose one of --csv and --json", param_hint="'--csv'")
    from ..insights.models import Insights

    with reported(), open_service(data_dir, url, token) as service:
        report = service.get(Insights, "/core/go/insights", since=since, until=until, bucket=bucket)
    if as_json:
        print_json(report)
        return
    if as_csv:
        write_csv(report)
        return
    out = table(
        bucket.capitalize(),
        Column("Sessions", right=True),
        Column("Total", right=True),
        Column("Median", right=True),
        Column("Steps", right=True),
        Column("Band at start", wrap=True),
        Column("Health at start", wrap=True),
        title=f"GO sessions per {bucket}",
    )
    for item in report.items:
        out.add_row(
            item.start[:10],
            str(item.sessions),
            human_duration(item.total_seconds) if item.sessions else "-",
            human_duration(item.median_seconds),
            str(item.steps_completed),
            cell(_counts(item.bands, BANDS)),
            cell(_counts(item.statuses, STATUSES)),
        )
    show(out, wide=wide)
