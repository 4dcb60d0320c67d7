"""The canon and band matrix exactly as the issue states them.

Written out by hand from the issue text, independently of the code's
``DEFAULT_CANON``, so a change to the code's table shows up as a failure.
"""

from __future__ import annotations

BANDS = ("A", "B", "C", "D")
ACTIONS = ("run", "scale", "optimize")

ENGINE_CLASSES: dict[str, tuple[str, ...]] = {
    "boring": ("storage_units", "cleaning_services", "landscaping_maintenance"),
    "alpha": ("wholesaling", "brrrr", "flips", "residential_rentals"),
    "opportunistic": ("fx_arbitrage", "collectibles_arbitrage", "sports_intelligence"),
    "standby": (
        "equipment_rental",
        "parking_rentals",
        "inspection_compliance",
        "conservative_yield_buckets",
    ),
    "legacy": (
        "ai_real_estate_school",
        "private_capital_fund",
        "childrens_trusts",
        "resort_chain",
        "exploration_salvage",
    ),
}

ALL_ENGINES: tuple[str, ...] = tuple(
    engine for engines in ENGINE_CLASSES.values() for engine in engines
)

CLASS_OF: dict[str, str] = {
    engine: cls for cls, engines in ENGINE_CLASSES.items() for engine in engines
}

# band -> class -> actions allowed. Classes absent from a band may do nothing.
ALLOWED: dict[str, dict[str, frozenset[str]]] = {
    "A": {
        "boring": frozenset({"run", "scale"}),
        "alpha": frozenset({"run", "scale", "optimize"}),
        "opportunistic": frozenset({"run", "optimize"}),
    },
    "B": {
        "boring": frozenset({"run"}),
        "alpha": frozenset({"run", "optimize"}),
        "opportunistic": frozenset({"run"}),
    },
    "C": {
        "boring": frozenset({"run"}),
        "alpha": frozenset({"run"}),
    },
    "D": {
        "boring": frozenset({"run"}),
    },
}

HARD_CAPS_USD: dict[str, int] = {
    "fx_arbitrage": 25000,
    "collectibles_arbitrage": 25000,
    "sports_intelligence": 15000,
}

BOOT_REASON = "Boot default: caution until governance KPIs are green"


def expected_allowed(band: str, engine: str, action: str) -> bool:
    return action in ALLOWED[band].get(CLASS_OF[engine], frozenset())


# Every (band, engine, action) with the value the issue gives it.
MATRIX_CASES: list[tuple[str, str, str, bool]] = [
    (band, engine, action, expected_allowed(band, engine, action))
    for band in BANDS
    for engine in ALL_ENGINES
    for action in ACTIONS
]
