"""What ``/openapi.json`` (and so ``/docs``) says about every route.

FastAPI documents a route's success and its 422; this module adds what the
app's own machinery answers, derived from each route's guard and inputs, so
no route can forget one:

* the bearer scheme (the Authorize button), on every route with a scope;
* 401 and 403 where a scope is needed, 429 where a rate limit counts;
* 503 where the route reads storage (every ``/core`` route but liveness, and
  ``/metrics``), or the rate-limit store;
* each with its body model, and the headers that come with it.

A route's own ``responses`` (its 404 or 409, with their descriptions) are
kept; they get the error body when they name none.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field

from .auth.deps import Guard

BEARER = "bearer"
VALIDATION_REF = "#/components/schemas/HTTPValidationError"  # FastAPI's 422 body
LIVENESS = "/core/healthz"


class ErrorBody(BaseModel):
    """Every error but 422 (which lists what was wrong with the input)."""

    detail: str = Field(description="What went wrong, and what to do about it.")


class ForbiddenBody(ErrorBody):
    """403: the token is valid but lacks the scope."""

    required_scope: str = Field(description="The scope this route needs.")


class RateLimitedBody(ErrorBody):
    """429: this identity has used up its limit for now."""

    retry_after_seconds: int = Field(description="When to retry; also in `Retry-After`.")


class UnavailableBody(ErrorBody):
    """503: a storage file (or table row) cannot be used, or the rate-limit
    store is unreachable. Nothing was changed; the file is left as it was."""

    file: str | None = Field(
        default=None,
        description="The file (or table row) that cannot be read or written; absent when the "
        "rate-limit store is the cause.",
    )


MODELS: tuple[type[BaseModel], ...] = (ErrorBody, ForbiddenBody, RateLimitedBody, UnavailableBody)

_HEADER = {"schema": {"type": "string"}}
RATE_HEADERS = {
    "Retry-After": {**_HEADER, "description": "Seconds to wait before retrying."},
    "RateLimit-Limit": {**_HEADER, "description": "Requests allowed in the window."},
    "RateLimit-Remaining": {**_HEADER, "description": "Requests left in the window."},
    "RateLimit-Reset": {**_HEADER, "description": "Seconds until the window frees a request."},
}


# FastAPI's own 422 schemas, described like ours.
FRAMEWORK_FIELDS: dict[str, dict[str, str]] = {
    "HTTPValidationError": {"detail": "Every problem found in the request, one item each."},
    "ValidationError": {
        "loc": 'Where: "body", "query" or "path", then the field (and list index).',
        "msg": "What is wrong, in words.",
        "type": "The kind of problem, e.g. missing, string_too_long, json_invalid.",
        "input": "The value given (a long one cut, with its length).",
        "ctx": "Details of the rule broken, e.g. the maximum length.",
    },
}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}


def guard_of(route: APIRoute) -> Guard | None:
    guards = [d.call for d in route.dependant.dependencies if isinstance(d.call, Guard)]
    return guards[0] if guards else None


def reads_storage(path: str) -> bool:
    return (path.startswith("/core/") and path != LIVENESS) or path == "/metrics"


def error_responses(route: APIRoute, path: str) -> dict[str, dict[str, Any]]:
    """The errors this route can answer beyond its own, by status code."""
    guard = guard_of(route)
    found: dict[str, dict[str, Any]] = {}
    if guard is not None and guard.scope is not None:
        found["401"] = {
            "description": "No token, or an invalid or revoked one (while tokens exist, or "
            "from a client that is not local).",
            "headers": {"WWW-Authenticate": {**_HEADER, "description": 'Bearer realm="valhalla"'}},
            "content": _ref(ErrorBody),
        }
        found["403"] = {
            "description": f"The token lacks the '{guard.scope}' scope.",
            "content": _ref(ForbiddenBody),
        }
    if guard is not None and guard.rule is not None:
        found["429"] = {
            "description": "Rate limited for this token (or client address).",
            "headers": RATE_HEADERS,
            "content": _ref(RateLimitedBody),
        }
    if reads_storage(path) or (guard is not None and guard.rule is not None):
        found["503"] = {
            "description": "A storage file cannot be used (named in `file`), or the "
            "rate-limit store is unreachable; nothing was changed.",
            "content": _ref(UnavailableBody),
        }
    return found


def _summary(route: APIRoute) -> str | None:
    """The docstring's first sentence, for a route that declares no summary."""
    text = " ".join((route.description or "").split())
    if not text:
        return None
    first = text.split(". ")[0].rstrip(".")
    return first if len(first) <= 80 else first[:77] + "..."


def document(app: FastAPI) -> None:
    """Install the additions on ``app.openapi`` (computed once, then cached)."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = plain()
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})[BEARER] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from `valhalla token create` (or POST /core/tokens). "
            "While no token exists, local clients need none (protected mode).",
        }
        schemas = components.setdefault("schemas", {})
        for model in MODELS:
            schemas[model.__name__] = model.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        for name, fields in FRAMEWORK_FIELDS.items():
            for field, text in fields.items():
                properties = schemas.get(name, {}).get("properties", {})
                if field in properties:
                    properties[field].setdefault("description", text)
        for context in iter_route_contexts(app.routes):
            route = context.original_route
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            path = context.path or route.path_format
            for method in context.methods or ():
                operation = schema["paths"].get(path, {}).get(method.lower())
                if operation is not None:
                    _complete(operation, route, path)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(operation: dict[str, Any], route: APIRoute, path: str) -> None:
    guard = guard_of(route)
    if guard is not None and guard.scope is not None:
        operation["security"] = [{BEARER: []}]
    if route.summary is None and (summary := _summary(route)):
        operation["summary"] = summary
    responses = operation.setdefault("responses", {})
    for code, spec in error_responses(route, path).items():
        responses[code] = {**spec, **responses.get(code, {})}
    for code, spec in responses.items():
        # A route's own 4xx/5xx (a 404, a 409) without a body gets the error body.
        if code[0] in "45" and "content" not in spec:
            spec["content"] = (
                {"application/json": {"schema": {"$ref": VALIDATION_REF}}}
                if code == "422"
                else _ref(ErrorBody)
            )
