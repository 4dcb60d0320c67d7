"""What the routers hand to the services: built once per app, no globals."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from .audit.service import ChainWatcher
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
    clock: Clock = utc_now
    watcher: ChainWatcher = field(default_factory=ChainWatcher)


def build_context(settings: Settings, *, clock: Clock = utc_now) -> AppContext:
    return AppContext(
        settings=settings,
        store=JsonStore(settings.data_dir),
        canon=load_canon(settings.canon_file),
        playbook=load_playbook(settings.playbook_file),
        clock=clock,
    )


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_actor(request: Request) -> str:
    """Who is acting. Until tokens exist every caller is the local operator."""
    return LOCAL_ACTOR
