"""The composition root: which features make the application, and how one
context is built for it from the settings.

Everything above the features (the app factory, the ``core`` router, the
metrics endpoint, the CLI) asks this module; nothing below it imports it.
Adding a feature is one line in :data:`FEATURES`.
"""

from __future__ import annotations

from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING

from .audit.feature import FEATURE as AUDIT
from .auth.feature import FEATURE as AUTH
from .auth.ratelimit import RateLimiter
from .auth.service import Authenticator
from .cone.feature import FEATURE as CONE
from .context import AppContext
from .events.feature import FEATURE as EVENTS
from .feature import Feature
from .go.feature import FEATURE as GO
from .health.feature import FEATURE as HEALTH
from .insights.feature import FEATURE as INSIGHTS
from .migrations import HEAD, VERSIONS_DIR
from .settings import Settings
from .storage.json_backend import JsonStore
from .storage.protocol import Schema, Store
from .timeutil import Clock, utc_now
from .webhooks.feature import FEATURE as WEBHOOKS

if TYPE_CHECKING:
    from .storage.sql_backend import Migrations, SqlStore

# In route-matching order: the GO page's hottest reads come first.
FEATURES: tuple[Feature, ...] = (GO, HEALTH, CONE, AUDIT, AUTH, EVENTS, INSIGHTS, WEBHOOKS)

SCHEMA: Schema = reduce(lambda a, b: a + b, (f.schema for f in FEATURES), Schema())
# Readiness reads each of these (every feature's documents, as their models).
READINESS = tuple(check for feature in FEATURES for check in feature.readiness)


def migrations() -> Migrations:
    """The SQL schema and its history (imports SQLAlchemy: SQL stores only)."""
    from .storage.sql_backend import Migrations

    return Migrations(SCHEMA, VERSIONS_DIR, head=HEAD)


def open_json(data_dir: Path, *, create: bool = True) -> JsonStore:
    """``create=False``: a missing data dir is an error, not a new empty one."""
    return JsonStore(data_dir, SCHEMA, create=create)


def open_sql(url: str, *, check_schema: bool = True, pool_size: int = 10) -> SqlStore:
    from .storage.sql_backend import SqlStore

    return SqlStore(url, migrations(), check_schema=check_schema, pool_size=pool_size)


def upgrade_database(url: str) -> tuple[str | None, str | None]:
    """Create or migrate the SQL schema; (revision before, revision after)."""
    from .storage.sql_backend import upgrade

    return upgrade(url, migrations())


def open_store(settings: Settings) -> Store:
    """The SQL backend when a database URL is set, else the JSON data dir."""
    if settings.database_url:
        return open_sql(settings.database_url, pool_size=settings.database_pool_size)
    return open_json(settings.data_dir)


def build_context(
    settings: Settings,
    *,
    clock: Clock = utc_now,
    authenticator: Authenticator | None = None,
    rate_limiter: RateLimiter | None = None,
) -> AppContext:
    """``authenticator`` and ``rate_limiter`` replace the ones the auth
    feature makes (tests hand in their own)."""
    ctx = AppContext(
        settings=settings, store=open_store(settings), clock=clock, readiness=READINESS
    )
    for feature in FEATURES:
        for extension in feature.build(ctx) if feature.build is not None else ():
            ctx.extensions[type(extension)] = extension
    if authenticator is not None:
        ctx.extensions[Authenticator] = authenticator
    if rate_limiter is not None:
        ctx.extensions[RateLimiter] = rate_limiter
    return ctx
