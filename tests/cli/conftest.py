"""Fixtures for CLI tests: the Typer app in-process on a tmp data dir, and
sessions seeded with a fake clock so durations are exact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.conftest import FakeClock, health_now
from valhalla_gov.cli import app
from valhalla_gov.compose import open_json
from valhalla_gov.go.playbook import load_playbook
from valhalla_gov.go.service import complete_step
from valhalla_gov.go.session_models import GoSession
from valhalla_gov.go.session_service import end_session, start_session
from valhalla_gov.storage.json_backend import JsonStore

# Wide tables (no wrapping inside cells) and no server or SQL settings leaking
# in from the developer's shell.
CLEAN_ENV: dict[str, str | None] = {
    "COLUMNS": "250",
    "VALHALLA_URL": None,
    "VALHALLA_TOKEN": None,
    "VALHALLA_DATA_DIR": None,
    "VALHALLA_DATABASE_URL": None,
    "VALHALLA_PLAYBOOK_FILE": None,
    "VALHALLA_CANON_FILE": None,
    # Set by tests/conftest.py for the test client; a shell has none of these.
    "VALHALLA_ALLOWED_HOSTS": None,
}


@dataclass
class Cli:
    """``cli.local("go", "status")`` runs ``valhalla go status --data-dir <tmp>``."""

    data_dir: Path
    runner: CliRunner = field(default_factory=CliRunner)

    def run(self, *args: str, env: dict[str, str | None] | None = None) -> Result:
        return self.runner.invoke(app, list(args), env={**CLEAN_ENV, **(env or {})})

    def local(self, *args: str) -> Result:
        return self.run(*args, "--data-dir", str(self.data_dir))


@pytest.fixture
def cli(data_dir: Path) -> Cli:
    return Cli(data_dir)


@dataclass
class Seeder:
    """Writes ended sessions straight through the services, on a fake clock."""

    data_dir: Path
    clock: FakeClock

    @property
    def store(self) -> JsonStore:
        return open_json(self.data_dir)

    def session(
        self,
        *,
        minutes: float,
        start_notes: str | None = None,
        end_notes: str | None = None,
        steps: Sequence[str] = (),
        gap_hours: float = 24,
    ) -> GoSession:
        store = self.store
        start_session(
            store=store,
            clock=self.clock,
            actor="seed",
            notes=start_notes,
            health=health_now(store, self.clock),
        )
        for step in steps:
            complete_step(
                store=store,
                health=health_now(store),
                playbook=load_playbook(None),
                step_id=step,
                done=True,
                notes=None,
                actor="seed",
                clock=self.clock,
            )
        self.clock.advance(minutes=minutes)
        ended = end_session(
            store=store,
            clock=self.clock,
            actor="closer",
            notes=end_notes,
            health=health_now(store, self.clock),
        )
        self.clock.advance(hours=gap_hours)
        return ended


@pytest.fixture
def seeder(data_dir: Path, clock: FakeClock) -> Seeder:
    return Seeder(data_dir, clock)
