"""Shared CLI pieces: options, the local context, printing helpers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # the app's imports cost most of a second; commands load them lazily
    from ..context import AppContext

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data dir (default: $VALHALLA_DATA_DIR or ./data)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def local_context(data_dir: Path | None) -> AppContext:
    """The same store, locks and settings a server on this data dir uses."""
    from ..compose import build_context
    from ..settings import Settings

    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    return build_context(settings)
