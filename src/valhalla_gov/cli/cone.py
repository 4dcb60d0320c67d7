"""``valhalla cone ...``: the risk band and engine decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .client import DataDirOption, JsonOption, TokenOption, UrlOption, open_service, reported
from .helpstyle import App
from .render import cell, note_text, print_json, short_time, show, table, valid_text

if TYPE_CHECKING:
    from ..cone.models import ConeState

# The canon's names, written out so `--help` needs no import of the models;
# tests/cli check that they match the canon.
BANDS = ("A", "B", "C", "D")
BAND_MEANING = {"A": "expansion", "B": "caution", "C": "stabilize", "D": "survival"}
ACTIONS = ("run", "scale", "optimize")

# Its help is in cli/__init__.py (GROUPS), shown without importing this module.
cone_app = App(rich_markup_mode=None, no_args_is_help=True)

BAND_HELP = ", ".join(f"{b} ({BAND_MEANING[b]})" for b in BANDS)


def _band(value: str) -> str:
    band = value.strip().upper()
    if band not in BANDS:
        raise typer.BadParameter(f"{value!r} is not a band; choose one of {BAND_HELP}")
    return band


def _action(value: str) -> str:
    action = value.strip().lower()
    if action not in ACTIONS:
        raise typer.BadParameter(f"{value!r} is not an action; choose one of {', '.join(ACTIONS)}")
    return action


def _reason(value: str) -> str:
    if not value.strip():
        raise typer.BadParameter("say why the band moves (it goes into the audit log)")
    return note_text(value) or value


def _print_state(state: ConeState) -> None:
    typer.echo(f"band {state.band} ({BAND_MEANING[state.band]})")
    typer.echo(f"reason: {state.reason}")
    if state.updated_at_utc or state.updated_by:
        typer.echo(f"set {short_time(state.updated_at_utc)} by {state.updated_by or '-'}")
    for key, value in state.metrics.items():
        typer.echo(f"metric {key}: {value}")


@cone_app.command("show")
def cone_show(
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The current band, its reason, who set it and when."""
    from ..cone.models import ConeState

    with reported(), open_service(data_dir, url, token) as service:
        state = service.get(ConeState, "/core/cone/state")
    if as_json:
        print_json(state)
    else:
        _print_state(state)


@cone_app.command("set")
def cone_set(
    band: Annotated[
        str,
        typer.Argument(
            callback=_band, metavar="BAND", help=f"{BAND_HELP}; any case.", show_default=False
        ),
    ],
    reason: Annotated[
        str,
        typer.Option(
            callback=_reason,
            metavar="TEXT",
            help="Why the band moves (audited).",
            show_default=False,
        ),
    ],
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move the cone to another band (audited CONE_SET; a server needs an owner token)."""
    from ..cone.models import ConeState

    with reported(), open_service(data_dir, url, token) as service:
        state = service.post(ConeState, "/core/cone/state", {"band": band, "reason": reason})
    if as_json:
        print_json(state)
    else:
        typer.echo(f"cone set to band {state.band} ({BAND_MEANING[state.band]})")
        typer.echo(f"reason: {state.reason}")


@cone_app.command("decide")
def cone_decide(
    engine: Annotated[
        str,
        typer.Argument(
            callback=valid_text, metavar="ENGINE", help="Engine name, e.g. storage_units."
        ),
    ],
    action: Annotated[
        str,
        typer.Argument(callback=_action, metavar="ACTION", help=f"One of {', '.join(ACTIONS)}."),
    ],
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """May ENGINE take ACTION in the current band? Recorded and audited. Exit 0
    either way: the answer is in `allowed`."""
    from ..cone.models import ConeDecision

    with reported(), open_service(data_dir, url, token) as service:
        decision = service.post(
            ConeDecision, "/core/cone/decide", {"engine": engine, "action": action}
        )
    if as_json:
        print_json(decision)
        return
    grid = table("engine", "class", "action", "band", "decision", "hard cap")
    grid.add_row(
        cell(decision.engine),
        decision.engine_class,
        decision.action,
        decision.band,
        "ALLOW" if decision.allowed else "DENY",
        "-" if decision.hard_cap_usd is None else f"${decision.hard_cap_usd:,}",
    )
    show(grid)
    typer.echo(decision.reason)
