"""The cone feature: the risk band and the engine/action matrix."""

from __future__ import annotations

from collections.abc import Sequence

from ..context import AppContext
from ..feature import Feature
from .canon import load_canon
from .store import SCHEMA, read_state


def _build(ctx: AppContext) -> Sequence[object]:
    return [load_canon(ctx.settings.canon_file)]  # read by routers as ctx.get(Canon)


FEATURE = Feature(__name__, schema=SCHEMA, readiness=(read_state,), build=_build)
