"""The database URL setting, checked without pydantic (the CLI's quick path
for a database given by its URL alone uses it too)."""

from __future__ import annotations

# (backend, driver) pairs this package ships the driver for.
SUPPORTED_DATABASES = frozenset([("postgresql", "psycopg"), ("sqlite", "pysqlite")])
# The driver a URL without one (``postgresql://``) gets: the one shipped.
DEFAULT_DRIVERS = {"postgresql": "psycopg", "postgres": "psycopg", "sqlite": "pysqlite"}
EXAMPLE_URL = "postgresql://valhalla@127.0.0.1/valhalla"


class BadDatabaseUrl(ValueError):
    """A refused URL, with the good value most like it (``example``)."""

    def __init__(self, message: str, example: str = EXAMPLE_URL) -> None:
        super().__init__(message)
        self.example = example


def database_url(value: str) -> str:
    """``value`` as the URL the store opens, or :class:`BadDatabaseUrl` in words.

    ``postgres://`` and ``postgresql://`` (what hosting providers and libpq
    write) mean the one PostgreSQL driver shipped, psycopg 3, and are read
    as ``postgresql+psycopg://``: refusing a URL whose meaning is certain
    would only make the operator retype it. A driver that is not shipped
    (``postgresql+psycopg2``, ``mysql``) is refused by name, without
    loading SQLAlchemy's plugin for it (which fails with a traceback)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except ArgumentError:
        if value.startswith(("/", "./", "~")) or "://" not in value:
            # A plain path: most likely meant as a SQLite file.
            raise BadDatabaseUrl(
                f"{value!r} is a path, not a database URL", example=f"sqlite:///{value}"
            ) from None
        raise BadDatabaseUrl(f"{value!r} is not a database URL") from None
    backend, _, driver = url.drivername.partition("+")
    driver = driver or DEFAULT_DRIVERS.get(backend, "")
    backend = "postgresql" if backend == "postgres" else backend
    if (backend, driver) not in SUPPORTED_DATABASES:
        raise BadDatabaseUrl(
            f"{url.drivername!r} is not supported: only PostgreSQL (postgresql://...) and "
            "SQLite (sqlite:///...) are"
        )
    if "+" not in url.drivername and backend == "postgresql":
        # SQLAlchemy's default PostgreSQL driver is psycopg2, not shipped.
        return "postgresql+psycopg://" + value.split("://", 1)[1]
    return value
