"""What a feature hands to the composition root (:mod:`valhalla_gov.compose`).

A feature is a folder with its models, its store (the documents, logs and
tables it keeps), its service (rules, no HTTP) and its router (thin). Its
``feature.py`` declares one :class:`Feature`; adding the feature to the
application is one line in ``compose.FEATURES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .storage.protocol import Document, Log, Schema, Store

if TYPE_CHECKING:
    from fastapi import APIRouter

    from .context import AppContext


@dataclass(frozen=True)
class TransferHooks:
    """How ``valhalla data import/export`` treats a feature's data beyond a
    plain copy of every document and log record."""

    # Records to append to the target's logs after the copy (data the
    # feature would derive on its next write, derived now so both sides count
    # the same).
    extra_records: Callable[[Store], dict[Log, list[dict[str, Any]]]] | None = None
    # A document's value as both sides must agree on it (e.g. with derived ids).
    normalise: Callable[[Document, Any], Any] | None = None


@dataclass(frozen=True)
class Feature:
    module: str  # the ``__name__`` of the feature's ``feature.py``
    schema: Schema = field(default_factory=Schema)
    # Modules of the package that each define ``router``, matched in this
    # order. Imported when the app is built, not when the CLI only needs the
    # schema.
    router_modules: Sequence[str] = ("router",)
    # Each reads one of the feature's documents as its model: readiness is
    # false while one fails (a file that parses but has the wrong shape).
    readiness: Sequence[Callable[[Store], object]] = ()
    # Objects the feature builds for itself once per app, registered in
    # AppContext.extensions by their type (read back with ``ctx.get(Type)``).
    build: Callable[[AppContext], Sequence[object]] | None = None
    # Runs in every worker while it serves (background tasks).
    lifespan: Callable[[AppContext], AbstractAsyncContextManager[None]] | None = None
    transfer: TransferHooks = field(default_factory=TransferHooks)

    @property
    def package(self) -> str:
        return self.module.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.package.rpartition(".")[2]

    def routers(self) -> list[APIRouter]:
        return [
            importlib.import_module(f"{self.package}.{module}").router
            for module in self.router_modules
        ]
