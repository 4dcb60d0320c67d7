"""Help in one style for every command, as most Unix manuals write it:
arguments and option values by upper-case names (``valhalla go complete
STEP``, ``--name NAME``), a required argument bare and an optional one in
brackets (``[DIR]``), choices as ``day|week|month``. Typer's own style shows
Python types (``<str>``) and braces (``{STEP}``, ``{url}``).

Every command group is an :class:`App`, a :class:`Group` whose commands are
:class:`Command`.

Both also keep ``--help`` cheap: typer runs every flag it was not given
through a pydantic adapter when its default is None, as ``--help`` and
``--install-completion`` have, and importing pydantic for that doubles what
``valhalla go --help`` costs. Those flags (never passed to our code) default
to False instead, which is what they mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from typer._click import Context, HelpFormatter
from typer._click.core import Command as ClickCommand
from typer._click.core import Parameter
from typer._click.exceptions import UsageError
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import CommandFunctionType


def argument_name(param: TyperArgument) -> str:
    name = param.metavar or (param.name or "").upper()
    return name if param.nargs == 1 else f"{name}..."


def _option_record(param: TyperOption, ctx: Context, opts: str) -> str:
    """``--name <str>`` as ``--name NAME``; a choice as ``--bucket day|week|month``."""
    if param.metavar is not None or param.is_flag or param.count:
        return opts
    shown = param.display_type_rich(ctx=ctx)
    if not shown or not opts.endswith(f" {shown}"):
        return opts
    inner = shown.removeprefix("<").removesuffix(">")
    value = inner if "|" in inner else (param.name or "").upper()
    return f"{opts.removesuffix(shown)}{value}"


def _unset_flags_false(params: list[Parameter]) -> list[Parameter]:
    for param in params:
        if (
            isinstance(param, TyperOption)
            and param.is_flag
            and not param.expose_value
            and param.default is None
        ):
            param.default = False
    return params


def _distance(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap two neighbours) from ``a`` to ``b``."""
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, rows[-2][j - 2] + 1)
            row.append(cost)
        rows.append(row)
    return rows[-1][-1]


def close_names(typo: str, names: list[str]) -> list[str]:
    """The names ``typo`` was probably meant as, closest first: one edit
    away (two for a longer name), or what difflib finds alike."""
    from difflib import get_close_matches

    word = typo.lower()
    scored = {n: _distance(word, n) for n in names}
    near = [n for n in names if scored[n] <= (1 if len(n) < 6 else 2)]
    alike = get_close_matches(word, names, n=3)
    found = sorted(set(near) | set(alike), key=lambda n: (scored[n], names.index(n)))
    return found[:3]


class Group(TyperGroup):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return _unset_flags_false(super().get_params(ctx))

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, ClickCommand | None, list[str]]:
        """An unknown command is refused with the ones it was likely meant as
        (``valhalla og status``: did you mean `go`?)."""
        try:
            return self._click_resolve_command(ctx, args)
        except UsageError as exc:
            matches = close_names(args[0], self.list_commands(ctx)) if args else []
            if matches:
                said = " or ".join(f"`{m}`" for m in matches)
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {said}?"
            raise


class Command(TyperCommand):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return _unset_flags_false(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        args: list[tuple[str, str]] = []
        opts: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):
                args.append((argument_name(param), record[1]))
            elif isinstance(param, TyperOption):
                opts.append((_option_record(param, ctx, record[0]), record[1]))
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        if opts:
            with formatter.section("Options"):
                formatter.write_dl(opts)


class App(typer.Typer):
    """A Typer that is a :class:`Group` of :class:`Command` unless told otherwise."""

    def __init__(self, *, cls: type[TyperGroup] | None = None, **kwargs: Any) -> None:
        # -h as well as --help, in every command (sub-contexts inherit it).
        kwargs.setdefault("context_settings", {"help_option_names": ["--help", "-h"]})
        super().__init__(cls=cls or Group, **kwargs)

    def command(
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        return super().command(name, cls=cls or Command, **kwargs)
