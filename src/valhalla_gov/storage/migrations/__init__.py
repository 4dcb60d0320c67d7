"""Alembic migrations for the SQL backend (run by ``valhalla db upgrade``)."""
