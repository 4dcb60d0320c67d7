"""Output helpers shared by the command groups: JSON for scripts, tables and
plain lines for people, and the ``--since``/``--until`` time options."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .terminal import safe_json

if TYPE_CHECKING:  # pydantic loads when a command prints, not for --help
    from pydantic import BaseModel


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
    from ..timeutil import OUT_OF_RANGE, parse_iso

    try:
        return parse_iso(text.strip())
    except ValueError as exc:
        if str(exc) == OUT_OF_RANGE:
            raise typer.BadParameter(f"{text!r}: {OUT_OF_RANGE}") from None
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


@dataclass(frozen=True)
class Column:
    """A column of a :class:`Table`. ``wrap``: its text wraps at spaces to
    fit the terminal (titles, notes, reasons); a column that does not wrap
    (ids, times, URLs, names: what one reads whole or types back) is never
    cut nor wrapped, however narrow the terminal."""

    header: str
    wrap: bool = False
    right: bool = False  # numbers line up on the right
    # A wrapping column narrows to its longest word, and to no less than this.
    floor: int = 12
    # Left out when the table cannot fit otherwise (--wide and --json show it).
    optional: bool = False


GAP = "  "
# A word longer than this may be split to fit; shorter ones never are.
MAX_WORD = 40


class Table:
    """Plain text columns, sized to the terminal: optional columns are left
    out while the rest cannot fit, then the columns that wrap give up width
    until the table fits (never below their longest word, up to
    :data:`MAX_WORD`); the others keep theirs. Wider than the terminal only
    when the columns that may not wrap alone are."""

    def __init__(self, *columns: str | Column, title: str | None = None) -> None:
        self.columns = [c if isinstance(c, Column) else Column(c) for c in columns]
        self.title = title
        self.rows: list[list[str]] = []

    def add_column(self, column: str | Column) -> None:
        self.columns.append(column if isinstance(column, Column) else Column(column))

    def add_row(self, *cells: object) -> None:
        self.rows.append(["-" if c is None or c == "" else str(c) for c in cells])

    def lines(self, width: int | None = None, *, wide: bool = False) -> list[str]:
        """The table as lines: fitted to ``width`` (default: the terminal's),
        or with ``wide`` one line a row, nothing wrapped."""
        rows = [[" ".join(c.split("\n")) for c in row] for row in self.rows] if wide else self.rows
        shown = list(range(len(self.columns)))
        natural = [
            max([len(col.header), *(len(line) for row in rows for line in row[i].split("\n"))])
            for i, col in enumerate(self.columns)
        ]
        widths = list(natural)
        limit = width if width is not None else terminal_width()
        if not wide:
            floors = self._floors(rows, natural)
            optional = [i for i, col in enumerate(self.columns) if col.optional]
            while optional and sum(floors[i] + len(GAP) for i in shown) - len(GAP) > limit:
                shown.remove(optional.pop())
            room = limit - len(GAP) * (len(shown) - 1)
            kept = _fit([widths[i] for i in shown], [floors[i] for i in shown], room)
            widths = [0] * len(widths)
            for i, w in zip(shown, kept, strict=True):
                widths[i] = w
        out = []
        if self.title:
            out.extend([self.title] if wide else _wrap(self.title, limit))
        columns = [(self.columns[i], widths[i]) for i in shown]
        headers = [_wrap(c.header, w) if c.wrap and not wide else [c.header] for c, w in columns]
        out.extend(self._line(columns, headers))
        out.append(GAP.join("-" * w for _, w in columns))
        for row in rows:
            cells = [
                _wrap(row[i], widths[i])
                if self.columns[i].wrap and not wide
                else row[i].split("\n")
                for i in shown
            ]
            out.extend(self._line(columns, cells))
        return out

    def _floors(self, rows: list[list[str]], natural: list[int]) -> list[int]:
        floors = []
        for i, col in enumerate(self.columns):
            if not col.wrap:
                floors.append(natural[i])
                continue
            words = [len(w) for row in rows for w in row[i].split()] + [
                len(w) for w in col.header.split()
            ]
            longest = min(max(words, default=1), MAX_WORD)
            floors.append(min(natural[i], max(longest, col.floor)))
        return floors

    @staticmethod
    def _line(columns: list[tuple[Column, int]], cells: list[list[str]]) -> list[str]:
        height = max(len(c) for c in cells)
        lines = []
        for n in range(height):
            parts = []
            for (col, w), cell_lines in zip(columns, cells, strict=True):
                text = cell_lines[n] if n < len(cell_lines) else ""
                parts.append(text.rjust(w) if col.right else text.ljust(w))
            lines.append(GAP.join(parts).rstrip())
        return lines


def _fit(widths: list[int], floors: list[int], room: int) -> list[int]:
    """``widths`` with the widest column above its floor narrowed, one
    character at a time, until they fit in ``room`` or all are at their floor."""
    widths = list(widths)
    excess = sum(widths) - room
    while excess > 0:
        candidates = [i for i, w in enumerate(widths) if w > floors[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return widths


def _wrap(text: str, width: int) -> list[str]:
    """Wrapped at spaces (a word longer than the width is split), keeping
    the text's own line breaks."""
    import textwrap

    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(textwrap.wrap(paragraph, max(width, 1), break_on_hyphens=False) or [""])
    return lines


def terminal_width() -> int:
    """$COLUMNS, else the terminal's width, else 80."""
    import shutil

    return shutil.get_terminal_size((80, 24)).columns


def show(table: Table, *, wide: bool = False) -> None:
    typer.echo("\n".join(table.lines(wide=wide)))


def table(*columns: str | Column, title: str | None = None) -> Table:
    return Table(*columns, title=title)


def cell(value: object) -> str:
    """User text as it is, ``-`` for nothing."""
    if value is None or value == "":
        return "-"
    return str(value)


WideOption = Annotated[
    bool,
    typer.Option("--wide", help="One line a row, nothing wrapped (for grep and wide screens)."),
]


def short_time(iso: str | None, *, zone: bool = True) -> str:
    """``2026-01-31T09:00:00.123456Z`` → ``2026-01-31 09:00:00Z`` (without
    the ``Z`` under a heading that says UTC)."""
    if not iso:
        return "-"
    from ..timeutil import parse_iso

    try:
        moment = parse_iso(iso)
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%d %H:%M:%SZ" if zone else "%Y-%m-%d %H:%M:%S")


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


def spoken_duration(seconds: float | None) -> str:
    """``37 s``, ``5 min 02 s``, ``1 h 02 min``: a duration in a sentence."""
    if seconds is None:
        return "an unknown time"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
