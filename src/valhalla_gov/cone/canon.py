"""The engine canon and the band/action matrix, as data.

The defaults below are the operator's canon; a JSON or YAML file named by
``VALHALLA_CANON_FILE`` replaces them whole (same shape as ``DEFAULT_CANON``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, model_validator

from ..textfiles import load_config

Band = Literal["A", "B", "C", "D"]
Action = Literal["run", "scale", "optimize"]
BANDS: tuple[Band, ...] = ("A", "B", "C", "D")  # best to worst
ACTIONS: tuple[Action, ...] = ("run", "scale", "optimize")
BAND_MEANING: dict[str, str] = {
    "A": "expansion",
    "B": "caution",
    "C": "stabilize",
    "D": "survival",
}
BOOT_BAND: Band = "B"
BOOT_REASON = "Boot default: caution until governance KPIs are green"


def band_rank(band: str) -> int:
    """0 for A (best) to 3 for D (worst)."""
    return "ABCD".index(band)


class Canon(BaseModel):
    engine_classes: dict[str, list[str]]
    matrix: dict[Band, dict[str, list[Action]]]
    hard_caps_usd: dict[str, int] = {}

    @model_validator(mode="after")
    def _consistent(self) -> Canon:
        seen: dict[str, str] = {}
        for cls, engines in self.engine_classes.items():
            for engine in engines:
                if engine in seen:
                    raise ValueError(f"engine {engine!r} is in both {seen[engine]!r} and {cls!r}")
                seen[engine] = cls
        for band, rules in self.matrix.items():
            unknown = set(rules) - set(self.engine_classes)
            if unknown:
                raise ValueError(f"matrix band {band} names unknown classes {sorted(unknown)}")
        unknown_caps = set(self.hard_caps_usd) - set(seen)
        if unknown_caps:
            raise ValueError(f"hard caps name unknown engines {sorted(unknown_caps)}")
        return self

    def class_of(self, engine: str) -> str | None:
        for cls, engines in self.engine_classes.items():
            if engine in engines:
                return cls
        return None

    def engines(self) -> list[str]:
        return sorted(e for engines in self.engine_classes.values() for e in engines)

    def allowed(self, band: str, engine_class: str) -> list[Action]:
        return list(self.matrix.get(band, {}).get(engine_class, []))  # type: ignore[call-overload]


DEFAULT_CANON: dict[str, Any] = {
    "engine_classes": {
        "boring": ["storage_units", "cleaning_services", "landscaping_maintenance"],
        "alpha": ["wholesaling", "brrrr", "flips", "residential_rentals"],
        "opportunistic": ["fx_arbitrage", "collectibles_arbitrage", "sports_intelligence"],
        "standby": [
            "equipment_rental",
            "parking_rentals",
            "inspection_compliance",
            "conservative_yield_buckets",
        ],
        "legacy": [
            "ai_real_estate_school",
            "private_capital_fund",
            "childrens_trusts",
            "resort_chain",
            "exploration_salvage",
        ],
    },
    "matrix": {
        "A": {
            "boring": ["run", "scale"],
            "alpha": ["run", "scale", "optimize"],
            "opportunistic": ["run", "optimize"],
        },
        "B": {"boring": ["run"], "alpha": ["run", "optimize"], "opportunistic": ["run"]},
        "C": {"boring": ["run"], "alpha": ["run"]},
        "D": {"boring": ["run"]},
    },
    "hard_caps_usd": {
        "fx_arbitrage": 25000,
        "collectibles_arbitrage": 25000,
        "sports_intelligence": 15000,
    },
}


def load_canon(path: Path | None) -> Canon:
    return load_config(Canon, path, DEFAULT_CANON, what="canon")
