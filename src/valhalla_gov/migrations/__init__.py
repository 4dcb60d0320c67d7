"""This application's schema history: one Alembic revision per change of any
part's tables (run by ``valhalla db upgrade``)."""

from pathlib import Path

# The revision scripts (Alembic's version location). Here, not in compose.py,
# so the CLI's direct reads can name it without importing every feature.
VERSIONS_DIR = Path(__file__).parent / "versions"
# The newest revision, so a store checks the schema without importing Alembic;
# tests/sql/test_sql_backend.py holds it to the scripts. Bump it with each new one.
HEAD = "0002"
