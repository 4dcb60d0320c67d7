"""This application's schema history: one Alembic revision per change of any
part's tables (run by ``valhalla db upgrade``)."""
