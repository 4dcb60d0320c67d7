"""What the routers hand to the services: built once per app, no globals."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from .audit.service import ChainWatcher
from .auth.ratelimit import RateLimiter
from .auth.service import Authenticator
from .cone.canon import Canon, load_canon
from .go.models import Playbook
from .go.playbook import load_playbook
from .settings import Settings
from .storage.json_backend import JsonStore
from .storage.protocol import Store
from .timeutil import Clock, utc_now

LOCAL_ACTOR = "local"


@dataclass
class AppContext:
    settings: Settings
    store: Store
    canon: Canon
    playbook: Playbook
    rate_limiter: RateLimiter
    clock: Clock = utc_now
    watcher: ChainWatcher = field(default_factory=ChainWatcher)
    authenticator: Authenticator = field(default_factory=Authenticator)


def open_store(settings: Settings) -> Store:
    """The SQL backend when a database URL is set, else the JSON data dir."""
    if settings.database_url:
        from .storage.sql_backend import SqlStore

        return SqlStore(settings.database_url, pool_size=settings.database_pool_size)
    return JsonStore(settings.data_dir)


def build_context(settings: Settings, *, clock: Clock = utc_now) -> AppContext:
    return AppContext(
        settings=settings,
        store=open_store(settings),
        canon=load_canon(settings.canon_file),
        playbook=load_playbook(settings.playbook_file),
        rate_limiter=RateLimiter(
            start_session=settings.rate_limit_start_session,
            writes=settings.rate_limit_writes,
            redis_url=settings.redis_url,
            fail_open=settings.rate_limit_fail_open,
        ),
        clock=clock,
    )


async def get_ctx(request: Request) -> AppContext:
    """Async on purpose: a sync dependency costs a worker-thread round trip."""
    ctx: AppContext = request.app.state.ctx
    return ctx
