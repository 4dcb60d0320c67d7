"""``valhalla go ...``: GO sessions and the playbook, on a data dir (the same
store and locks as a running server) or against a server with ``--url``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Annotated

import typer

from .client import (
    END_HINT,
    PAGE_MAX,
    REFUSED,
    CliError,
    DataDirOption,
    JsonOption,
    Service,
    TokenOption,
    UrlOption,
    iter_pages,
    open_service,
    reported,
)
from .helpstyle import App
from .render import (
    Column,
    SinceOption,
    UntilOption,
    WideOption,
    cell,
    check_range,
    human_duration,
    note_text,
    print_json,
    short_time,
    show,
    spoken_duration,
    table,
    valid_text,
)

if TYPE_CHECKING:
    from ..go.models import Checklist, ChecklistStep, CompleteResult, NextStep
    from ..go.session_models import GoSession

# Its help is in cli/__init__.py (GROUPS), shown without importing this module.
go_app = App(rich_markup_mode=None, no_args_is_help=True)


NOOP_HEADER = "Valhalla-Noop"  # "true" when a write changed nothing


def iter_sessions(
    service: Service,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    page_size: int = PAGE_MAX,
) -> Iterator[GoSession]:
    """Every ended session whose start is in [since, until], newest first."""
    from ..go.session_models import SessionPage

    yield from iter_pages(
        service, SessionPage, "/core/go/sessions", limit=page_size, since=since, until=until
    )


def _snapshot_value(snapshot: dict[str, object] | None, part: str, key: str) -> str | None:
    if not snapshot:
        return None
    section = snapshot.get(part)
    if isinstance(section, dict):
        value = section.get(key)
        return None if value is None else str(value)
    return None


def end_band(session: GoSession) -> str | None:
    return _snapshot_value(session.end_snapshot, "cone", "band")


def end_status(session: GoSession) -> str | None:
    return _snapshot_value(session.end_snapshot, "status", "status")


def _print_session(session: GoSession, as_json: bool) -> None:
    if as_json:
        print_json(session)
        return
    if session.active:
        typer.echo(f"active session {session.id} since {session.started_at_utc}")
        typer.echo(f"at start: band {session.cone_band}, health {session.status}")
    elif session.ended_at_utc:
        typer.echo(
            f"no active session; last {session.id} ended {session.ended_at_utc}"
            f" after {human_duration(session.duration_seconds)}"
        )
    else:
        typer.echo("no session has been started yet")
    if session.notes:
        # Continuation lines indented: a note cannot print a line of its own.
        typer.echo("notes: " + session.notes.replace("\n", "\n       "))
    if session.steps_completed:
        typer.echo(f"steps completed: {', '.join(session.steps_completed)}")


@go_app.command("status")
def go_status(
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the current session (or the last ended one)."""
    from ..go.session_models import GoSession

    with reported(), open_service(data_dir, url, token) as service:
        session = service.get(GoSession, "/core/go/session")
    _print_session(session, as_json)


@go_app.command("start")
def go_start(
    notes: Annotated[
        str | None,
        typer.Option(callback=note_text, metavar="TEXT", help="What this session is for."),
    ] = None,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a session, snapshotting cone and health (exit 1 while one is active)."""
    from ..go.session_models import GoSession

    with reported(), open_service(data_dir, url, token) as service:
        session = service.post(
            GoSession, "/core/go/start_session", {"notes": notes}, conflict_hint=END_HINT
        )
    _print_session(session, as_json)


@go_app.command("end")
def go_end(
    notes: Annotated[
        str | None, typer.Option(callback=note_text, metavar="TEXT", help="How it went.")
    ] = None,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """End the active session (with none active: says so, exit 1; the notes are not saved)."""
    from ..go.session_models import GoSession

    with reported(), open_service(data_dir, url, token) as service:
        resp = service.request("POST", "/core/go/end_session", body={"notes": notes})
        session = service.parse(GoSession, resp.json())
        if resp.headers.get(NOOP_HEADER) == "true":
            # Nothing was ended: the answer is the last session, unchanged.
            lost = "; your notes were not saved" if notes else ""
            raise CliError(f"refused: no active session{lost} ({_last(session)})", REFUSED)
    if as_json:
        print_json(session)
        return
    _print_ended(session)


def _print_ended(session: GoSession) -> None:
    """What ``go end`` did, in words distinct from every refusal."""
    typer.echo(
        f"ended session {session.id} after {spoken_duration(session.duration_seconds)}"
        f" (started {short_time(session.started_at_utc)}, band "
        f"{_change(session.cone_band, end_band(session))}, health "
        f"{_change(session.status, end_status(session))})"
    )
    if session.notes:
        typer.echo("notes: " + session.notes.replace("\n", "\n       "))
    if session.steps_completed:
        typer.echo(f"steps completed: {', '.join(session.steps_completed)}")


def _last(session: GoSession) -> str:
    if session.ended_at_utc:
        return f"the last one, {session.id}, ended {session.ended_at_utc}"
    return "none has been started yet; `valhalla go start` starts one"


@go_app.command("history")
def go_history(
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int, typer.Option(min=1, metavar="N", help="How many sessions at most.")] = 20,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    wide: WideOption = False,
) -> None:
    """Ended sessions, newest first (the active one is `go status`)."""
    check_range(since, until)
    with reported(), open_service(data_dir, url, token) as service:
        found = list(
            islice(
                iter_sessions(
                    service, since=since, until=until, page_size=min(limit + 1, PAGE_MAX)
                ),
                limit + 1,
            )
        )
    sessions, more = found[:limit], len(found) > limit
    if as_json:
        print_json(sessions)
        return
    if not sessions:
        typer.echo("no ended sessions" + (" in that time range" if since or until else ""))
        return
    grid = table(
        "started (UTC)",
        Column("duration", right=True),
        # "B yellow", or "B -> C yellow -> red" when they moved during the
        # session: one column, so that 80 columns hold the time and the id.
        Column("band, health", wrap=True, floor=1),
        Column("steps", right=True, optional=True),
        Column("by", optional=True),
        Column("notes", wrap=True, floor=8),
        "id",
    )
    for s in sessions:
        grid.add_row(
            short_time(s.started_at_utc, zone=False),
            human_duration(s.duration_seconds),
            f"{_change(s.cone_band, end_band(s))} {_change(s.status, end_status(s))}",
            str(len(s.steps_completed)),
            cell(s.started_by),
            cell(s.notes),
            cell(s.id),
        )
    show(grid, wide=wide)
    if more:
        typer.echo(f"(showing the newest {limit}; raise --limit or narrow --since/--until)")


def _change(before: str | None, after: str | None) -> str:
    if after is None or after == before:
        return before or "-"
    return f"{before or '-'} -> {after}"


def bands_of(band_min: str) -> str:
    """The bands a step fits: from A down to its ``band_min``."""
    return "A" if band_min == "A" else f"A-{band_min}"


def _state(step: ChecklistStep) -> str:
    # A step that does not fit the band is unfit whatever the health says.
    if step.done:
        return "done"
    if not step.fits:
        return f"needs band {step.band_min} or better"
    if step.blocked:
        return "blocked (health red)"
    return "ready"


def _print_checklist(checklist: Checklist, *, wide: bool = False) -> None:
    grid = table(
        Column("#", right=True),
        "step",
        Column("title", wrap=True),
        "bands",
        Column("state", wrap=True),
        Column("notes", wrap=True),
        title=f"band {checklist.cone_band}, health {checklist.status}: "
        f"{checklist.done_count}/{checklist.total} done",
    )
    for number, step in enumerate(checklist.steps, start=1):
        grid.add_row(
            str(number),
            step.id,
            cell(step.title),
            bands_of(step.band_min),
            _state(step),
            cell(step.notes),
        )
    show(grid, wide=wide)
    for reason in checklist.blocked_reasons:
        typer.echo(f"note: {reason}")


def _print_next(nxt: NextStep) -> None:
    step = nxt.next_step
    if step is not None:
        grid = table(
            "step",
            Column("title", wrap=True),
            Column("why", wrap=True),
            "bands",
            title=f"band {nxt.cone_band}, health {nxt.status}",
        )
        grid.add_row(step.id, cell(step.title), cell(step.why), bands_of(step.band_min))
        show(grid)
        typer.echo(f"{nxt.message}  (`valhalla go complete {step.id}` when done)")
    else:
        typer.echo(nxt.message)


@go_app.command("next")
def go_next(
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The next playbook step: not done, fitting the band, not blocked."""
    from ..go.models import NextStep

    with reported(), open_service(data_dir, url, token) as service:
        nxt = service.get(NextStep, "/core/go/next_step")
    if as_json:
        print_json(nxt)
    else:
        _print_next(nxt)


@go_app.command("checklist")
def go_checklist(
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    wide: WideOption = False,
) -> None:
    """Every playbook step with its state (done, ready, blocked, needs a better band)."""
    from ..go.models import Checklist

    with reported(), open_service(data_dir, url, token) as service:
        checklist = service.get(Checklist, "/core/go/checklist")
    if as_json:
        print_json(checklist)
    else:
        _print_checklist(checklist, wide=wide)


@go_app.command("complete")
def go_complete(
    step: Annotated[
        str,
        typer.Argument(
            callback=valid_text, metavar="STEP", help="Step id, as `valhalla go checklist` shows."
        ),
    ],
    notes: Annotated[
        str | None, typer.Option(callback=note_text, metavar="TEXT", help="What you found.")
    ] = None,
    undo: Annotated[bool, typer.Option("--undo", help="Mark the step not done again.")] = False,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Mark a playbook step done (recorded in the active session, if any)."""
    from ..go.models import CompleteResult

    body = {"step_id": step, "done": not undo, "notes": notes}
    with reported(), open_service(data_dir, url, token) as service:
        result = service.post(CompleteResult, "/core/go/complete", body)
    if as_json:
        print_json(result)
    else:
        _print_complete(result)


def _print_complete(result: CompleteResult) -> None:
    state = "done" if result.done else "not done"
    where = (
        f"recorded in session {result.session_id}"
        if result.session_id
        else "no active session, so no session records it"
    )
    typer.echo(f"step {result.step_id} marked {state} ({where})")
