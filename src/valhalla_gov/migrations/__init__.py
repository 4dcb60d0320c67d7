"""This application's schema history: one Alembic revision per change of any
part's tables (run by ``valhalla db upgrade``)."""

from pathlib import Path

# The revision scripts (Alembic's version location). Here, not in compose.py,
# so the CLI's direct reads can name it without importing every feature.
VERSIONS_DIR = Path(__file__).parent / "versions"
