"""Application factory."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .api_docs import document
from .auth.ratelimit import RateLimiter
from .auth.service import Authenticator
from .compose import FEATURES, build_context
from .context import AppContext
from .core_router import core
from .errors import DomainError, storage_unavailable
from .health.publisher import HealthPublisher
from .health.store import record_server_error
from .metrics_endpoint import router as metrics_router
from .observability import logs
from .observability.middleware import ObservabilityMiddleware, RouteLabels
from .plain_errors import plain_message
from .security.gate import SecurityGate, allowed_host_names
from .settings import Settings
from .storage.errors import InvalidCursorError, StorageError, UnstorableValueError
from .timeutil import Clock, iso_z, utc_now
from .ui.router import mount_ui

log = logging.getLogger("valhalla_gov")


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock = utc_now,
    authenticator: Authenticator | None = None,
    rate_limiter: RateLimiter | None = None,
) -> FastAPI:
    """The app on ``settings``; ``authenticator`` and ``rate_limiter`` are
    for the CLI's in-process app (see :func:`compose.build_context`)."""
    settings = settings or Settings()
    ctx = build_context(
        settings, clock=clock, authenticator=authenticator, rate_limiter=rate_limiter
    )
    app = FastAPI(
        title="Valhalla GO",
        version=__version__,
        description="Operator governance: cone, health, audit, GO playbook and GO sessions.",
        lifespan=_lifespan(ctx),
        # /docs and /openapi.json are served by ui/router.py: shipped Swagger UI
        # files (no CDN) and the viewer scope on the schema.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # A trailing-slash redirect would echo the Host header in Location.
        redirect_slashes=False,
    )
    app.state.ctx = ctx
    app.include_router(core)
    app.include_router(metrics_router)
    mount_ui(app)
    document(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=[
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "X-Request-ID",
                "Valhalla-Noop",
            ],
        )
    _install_error_handlers(app, ctx)
    # Host, origin, authentication and body limits before any route runs.
    app.add_middleware(
        SecurityGate,
        store=ctx.store,
        authenticator=ctx.get(Authenticator),
        clock=ctx.clock,
        allowed_hosts=allowed_host_names(settings.bind_host, settings.allowed_hosts),
        cors_origins=settings.cors_origins,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_seconds=settings.body_timeout_seconds,
    )
    # Outermost of ours: it sees the final status and latency of everything.
    app.add_middleware(ObservabilityMiddleware, labels=RouteLabels(app.routes))
    problems = ctx.store.probe()
    for problem in problems:
        log.error("storage problem at start-up (readiness is false): %s", problem)
    return app


def _lifespan(ctx: AppContext) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Every feature's background work, for as long as the app serves."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for feature in FEATURES:
                if feature.lifespan is not None:
                    await stack.enter_async_context(feature.lifespan(ctx))
            yield

    return lifespan


def _install_error_handlers(app: FastAPI, ctx: AppContext) -> None:
    @app.exception_handler(StorageError)
    async def storage_error(request: Request, exc: StorageError) -> JSONResponse:
        log.error("storage error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            status_code=503,
            content=storage_unavailable(exc),
        )

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code,
            content={"detail": exc.detail, **exc.body},
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # A body that is not text (any content type) is echoed as readable
        # text: decoding it strictly would turn the 422 into a 500. NaN and
        # Infinity (which Python's JSON reader takes) are echoed as strings:
        # JSON has no such numbers.
        errors = jsonable_encoder(
            [_in_words(e) for e in exc.errors()],
            custom_encoder={bytes: _printable, float: _json_float},
        )
        # Spelt as every other answer (compact, UTF-8); the echoed input may
        # hold lone surrogates, which UTF-8 cannot encode: those, and only
        # those, are written as the JSON escapes they stand for (\udcff).
        text = json.dumps(
            {"detail": [_capped(e) for e in errors]},
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
        )
        body = text.encode("utf-8", errors="backslashreplace")
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(UnstorableValueError)
    async def unstorable(request: Request, exc: UnstorableValueError) -> JSONResponse:
        # Raised by the storage layer before anything is written (the
        # transaction takes back earlier writes): the input is at fault.
        detail = [{"type": "value_error", "loc": ["body"], "msg": f"cannot be stored: {exc}"}]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(InvalidCursorError)
    async def bad_cursor(request: Request, exc: InvalidCursorError) -> JSONResponse:
        # The documented 422 shape (HTTPValidationError), like every other 422.
        detail = [{"type": "value_error", "loc": ["query", "cursor"], "msg": str(exc)}]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers a body it cannot decode (not UTF-8) with an
        # undocumented 400; it is invalid input like any other: 422.
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            msg = "the body is not UTF-8 JSON"
            detail = [{"type": "json_invalid", "loc": ["body"], "msg": msg}]
            return JSONResponse(status_code=422, content={"detail": detail})
        return await http_exception_handler(request, exc)

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        record = {
            "ts_utc": iso_z(ctx.clock()),
            "method": request.method,
            "path": request.url.path,
            "error": type(exc).__name__,
        }

        try:
            await run_in_threadpool(lambda: record_server_error(store=ctx.store, record=record))
        except StorageError as store_exc:
            log.error("could not record the server error: %s", store_exc)
        ctx.get(HealthPublisher).forget()  # the light counts it from the next answer
        return JSONResponse(status_code=500, content={"detail": "internal server error"})


def _in_words(error: Any) -> dict[str, Any]:
    """FastAPI's error item with its ``msg`` in plain words, and without the
    regular expression a pattern's ``ctx`` would show."""
    item = dict(error)
    item["msg"] = plain_message(item)
    ctx = {k: v for k, v in (item.pop("ctx", None) or {}).items() if k not in ("pattern", "error")}
    if ctx:
        item["ctx"] = ctx
    return item


def _printable(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _json_float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


# A 422 echoes what was refused; a 10,000-character note is not worth
# sending back whole.
ECHO_LIMIT = 200


def _capped(error: dict[str, Any]) -> dict[str, Any]:
    value = error.get("input")
    if value is None or isinstance(value, bool | int | float):
        return error
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) <= ECHO_LIMIT:
        return error
    return {**error, "input": f"{text[:ECHO_LIMIT]}... ({len(text):,} characters)"}


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` workers: settings come from the environment."""
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    app = create_app(settings)
    freeze_start_up()
    return app


def freeze_start_up() -> None:
    """Take what start-up built out of the cycle collector's sight, in a
    process about to serve.

    Modules, classes, schemas, routes and the store live as long as the
    process. Left in the oldest generation, each full collection walks all
    of them (about 75 ms with the PostgreSQL driver loaded, several times a
    second under load: the slowest tenth of requests waited for it). Frozen,
    they are skipped; objects made later are collected as before. Only for
    a process that builds one app and serves it (`valhalla serve`'s
    workers): an app built and dropped after a freeze would never be
    collected."""
    gc.collect()  # start-up's own garbage is freed, not frozen
    gc.freeze()
