"""The CLI fixtures (a data dir's CLI, a session seeder) for the edge cases."""

from tests.cli.conftest import cli, seeder

__all__ = ["cli", "seeder"]
