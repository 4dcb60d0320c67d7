"""The OpenAPI document (what /docs shows) names every error a route can
answer, with its body, and says what each route and field is for."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.auth.test_scope_matrix import EXPECTED
from tests.conftest import owner_headers
from valhalla_gov.app import create_app
from valhalla_gov.settings import Settings

# Routes that count against a rate limit, written out independently of the
# guards; a new limited route fails test_limited_routes_are_the_listed_ones.
LIMITED = {
    ("POST", "/core/cone/state"),
    ("GET", "/core/cone/decide"),
    ("POST", "/core/cone/decide"),
    ("POST", "/core/webhooks"),
    ("DELETE", "/core/webhooks/{name}"),
    ("POST", "/core/webhooks/{name}/test"),
    ("POST", "/core/go/complete"),
    ("POST", "/core/go/start_session"),
    ("POST", "/core/go/end_session"),
    ("POST", "/core/tokens"),
    ("DELETE", "/core/tokens/{name}"),
    ("POST", "/core/auth/links"),
}
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi")))


@pytest.fixture(scope="module")
def spec(app: FastAPI) -> dict[str, Any]:
    owner = owner_headers(app.state.ctx.settings.data_dir)
    with TestClient(app, client=("127.0.0.1", 50000), headers=owner) as client:
        resp = client.get("/openapi.json")
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json()
    return body


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def reads_storage(path: str) -> bool:
    return (path.startswith("/core/") and path != "/core/healthz") or path == "/metrics"


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    found: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


def test_the_bearer_scheme_is_declared(spec: dict[str, Any]) -> None:
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"


def test_every_route_documents_its_errors(spec: dict[str, Any]) -> None:
    seen = set()
    for method, path, op in operations(spec):
        seen.add((method, path))
        where = f"{method} {path}"
        responses = op["responses"]
        scope = EXPECTED.get((method, path))
        if scope is not None:
            assert op.get("security") == [{"bearer": []}], where
            assert {"401", "403"} <= set(responses), where
            forbidden = resolve(spec, responses["403"]["content"]["application/json"]["schema"])
            assert "required_scope" in forbidden["properties"], where
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in responses, where
        if (method, path) in LIMITED:
            assert "429" in responses, where
            assert "Retry-After" in responses["429"]["headers"], where
        if reads_storage(path):
            assert "503" in responses, where
            unavailable = resolve(spec, responses["503"]["content"]["application/json"]["schema"])
            assert "file" in unavailable["properties"] or path == "/core/readyz", where
        for code, response in responses.items():
            if code.startswith(("4", "5")):
                assert "content" in response, f"{where} {code} has no body model"
                assert response.get("description"), f"{where} {code}"
    # Every route in the scope matrix is documented.
    assert {k for k in EXPECTED if k[1] not in {"/", "/docs", "/openapi.json"}} <= seen


def test_limited_routes_are_the_listed_ones(app: FastAPI) -> None:
    from fastapi.routing import APIRoute, iter_route_contexts

    from valhalla_gov.api_docs import guard_of

    limited: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path is not None:
            guard = guard_of(route)
            if guard is not None and guard.rule is not None:
                limited.update((m, context.path) for m in context.methods or ())
    assert limited == LIMITED


def test_every_route_has_a_summary_and_a_description(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        where = f"{method} {path}"
        summary = op.get("summary", "")
        assert summary, where
        # Not FastAPI's default: the function's name in title case.
        default = op["operationId"].split("_core_")[0].split("_metrics_")[0]
        assert summary.lower().replace(" ", "_") != default.lower(), where
        assert op.get("description"), where


def test_every_request_body_has_an_example_and_described_fields(spec: dict[str, Any]) -> None:
    bodies = 0
    for method, path, op in operations(spec):
        body = op.get("requestBody")
        if body is None:
            continue
        bodies += 1
        media = body["content"]["application/json"]
        schema = resolve(spec, media["schema"])
        assert "examples" in schema or "examples" in media or "example" in media, (
            f"{method} {path} has no example"
        )
        for name, field in schema["properties"].items():
            assert field.get("description"), f"{method} {path}: {name} has no description"
    assert bodies >= 5


def test_every_field_of_every_schema_is_described(spec: dict[str, Any]) -> None:
    missing: dict[str, list[str]] = {}
    for name, schema in spec["components"]["schemas"].items():
        for field, sub in schema.get("properties", {}).items():
            if not sub.get("description", "").strip():
                missing.setdefault(name, []).append(field)
    assert not missing, missing
    schemas = spec["components"]["schemas"]
    assert len(schemas) >= 30
    assert sum(len(s.get("properties", {})) for s in schemas.values()) >= 150
