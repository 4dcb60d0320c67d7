"""The default GO launch playbook, as data.

A JSON or YAML file named by ``VALHALLA_PLAYBOOK_FILE`` replaces it whole:
``{"steps": [{"id", "title", "why", "band_min", "blocked_if_red"}, ...]}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..textfiles import load_config
from .models import Playbook

DEFAULT_PLAYBOOK: dict[str, Any] = {
    "steps": [
        {
            "id": "preflight_view_dashboard",
            "title": "Look at the dashboard before touching anything",
            "why": "Read the band, the health light and its reasons first; every later step "
            "depends on knowing where you stand.",
            "band_min": "D",
            "blocked_if_red": False,
        },
        {
            "id": "set_opportunistic_caps",
            "title": "Confirm the hard caps on opportunistic engines",
            "why": "Opportunistic engines can lose money fast; a written cap per engine keeps "
            "one bad week from sinking the rest.",
            "band_min": "C",
            "blocked_if_red": True,
        },
        {
            "id": "confirm_boring_sop",
            "title": "Confirm the standard operating procedure for boring engines",
            "why": "Boring engines pay the bills; their routine must run without you before "
            "anything riskier gets attention.",
            "band_min": "C",
            "blocked_if_red": True,
        },
        {
            "id": "intake_ready",
            "title": "Get deal intake ready",
            "why": "One place where every opportunity lands, so nothing is judged from memory.",
            "band_min": "B",
            "blocked_if_red": True,
        },
        {
            "id": "lead_log_ready",
            "title": "Open the lead log",
            "why": "Every lead gets a line with its source and next action; what is not logged "
            "is not followed up.",
            "band_min": "B",
            "blocked_if_red": True,
        },
        {
            "id": "weekly_rhythm",
            "title": "Put the weekly rhythm in the calendar",
            "why": "A fixed weekly slot for review and decisions keeps the cone honest.",
            "band_min": "B",
            "blocked_if_red": True,
        },
        {
            "id": "start_engine_wholesaling_run",
            "title": "Start the wholesaling engine in run mode",
            "why": "Wholesaling is the alpha engine with the shortest feedback loop; run it "
            "before scaling anything.",
            "band_min": "B",
            "blocked_if_red": True,
        },
        {
            "id": "start_one_boring_engine",
            "title": "Start one boring engine",
            "why": "One steady cash engine beside the alpha one balances the week.",
            "band_min": "B",
            "blocked_if_red": True,
        },
        {
            "id": "first_week_review",
            "title": "Hold the first weekly review",
            "why": "Compare what happened with the plan, then decide whether the band should move.",
            "band_min": "B",
            "blocked_if_red": True,
        },
    ]
}


def load_playbook(path: Path | None) -> Playbook:
    return load_config(Playbook, path, DEFAULT_PLAYBOOK, what="playbook")
