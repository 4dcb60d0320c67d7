"""Application factory."""

from __future__ import annotations

import logging
import traceback

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from . import __version__
from .context import AppContext, build_context
from .core_router import core
from .errors import DomainError
from .settings import Settings
from .storage.errors import InvalidCursorError, StorageError
from .storage.protocol import LOG_SERVER_ERRORS
from .timeutil import Clock, iso_z, utc_now

log = logging.getLogger("valhalla_gov")


def create_app(settings: Settings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or Settings()
    ctx = build_context(settings, clock=clock)
    app = FastAPI(
        title="Valhalla GO",
        version=__version__,
        description="Operator governance: cone, health, audit, GO playbook and GO sessions.",
    )
    app.state.ctx = ctx
    app.include_router(core)
    _install_error_handlers(app, ctx)
    problems = ctx.store.probe()
    for problem in problems:
        log.error("storage problem at start-up (readiness is false): %s", problem)
    return app


def _install_error_handlers(app: FastAPI, ctx: AppContext) -> None:
    @app.exception_handler(StorageError)
    async def storage_error(request: Request, exc: StorageError) -> JSONResponse:
        log.error("storage error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            status_code=503,
            content={"detail": f"storage unavailable: {exc}", "file": exc.path},
        )

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail, **exc.body})

    @app.exception_handler(InvalidCursorError)
    async def bad_cursor(request: Request, exc: InvalidCursorError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        # Recorded durably so health can count recent server errors across workers.
        log.error(
            "unhandled error on %s %s\n%s",
            request.method,
            request.url.path,
            "".join(traceback.format_exception(exc)),
        )
        try:
            with ctx.store.transaction() as txn:
                txn.append_log(
                    LOG_SERVER_ERRORS,
                    {
                        "ts_utc": iso_z(ctx.clock()),
                        "method": request.method,
                        "path": request.url.path,
                        "error": type(exc).__name__,
                    },
                )
        except StorageError as store_exc:
            log.error("could not record the server error: %s", store_exc)
        return JSONResponse(status_code=500, content={"detail": "internal server error"})


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` workers: settings come from the environment."""
    logging.basicConfig(level=logging.INFO)
    return create_app(Settings())
