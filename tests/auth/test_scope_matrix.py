"""The scope matrix over every route, generated from the app's own routes."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from tests.auth.conftest import Tokens
from valhalla_gov.auth.deps import Guard
from valhalla_gov.auth.service import create_signin_code
from valhalla_gov.events.hub import EventHub
from valhalla_gov.timeutil import utc_now

# The rule for every route, written out here independently of the code. A new
# route fails test_every_route_has_exactly_the_expected_guard until it is added.
EXPECTED: dict[tuple[str, str], str | None] = {
    ("GET", "/core/audit/events"): "viewer",
    ("GET", "/core/audit/verify"): "viewer",
    ("GET", "/core/audit/head"): "viewer",
    ("GET", "/core/whoami"): "viewer",
    ("GET", "/core/tokens"): "owner",
    ("POST", "/core/tokens"): "owner",
    ("DELETE", "/core/tokens/{name}"): "owner",
    ("POST", "/core/auth/links"): "owner",
    # Its body is the credential: a sign-in link's one-time code.
    ("POST", "/core/auth/signin"): None,
    # The page's check of the server, made before it sends its credential.
    ("POST", "/core/auth/hello"): None,
    ("GET", "/core/cone/state"): "viewer",
    ("POST", "/core/cone/state"): "owner",
    ("GET", "/core/cone/decide"): "viewer",
    ("POST", "/core/cone/decide"): "viewer",
    ("GET", "/core/status/ryg"): "viewer",
    ("GET", "/core/healthz"): None,
    ("GET", "/core/readyz"): None,
    ("GET", "/core/go/checklist"): "viewer",
    ("GET", "/core/go/next_step"): "viewer",
    ("POST", "/core/go/complete"): "operator",
    ("GET", "/core/go/summary"): "viewer",
    ("GET", "/core/go/session"): "viewer",
    ("POST", "/core/go/start_session"): "operator",
    ("POST", "/core/go/end_session"): "operator",
    ("GET", "/core/go/sessions"): "viewer",
    ("GET", "/core/go/sessions/{session_id}"): "viewer",
    ("GET", "/"): None,
    ("GET", "/metrics"): "viewer",
    ("GET", "/core/events/stream"): "viewer",
    ("GET", "/core/webhooks"): "owner",
    ("POST", "/core/webhooks"): "owner",
    ("DELETE", "/core/webhooks/{name}"): "owner",
    ("POST", "/core/webhooks/{name}/test"): "owner",
    ("GET", "/core/go/insights"): "viewer",
    # The docs page is a shell of shipped files; the schema it shows is a read.
    ("GET", "/docs"): None,
    ("GET", "/openapi.json"): "viewer",
}
# The GO page's static assets (and the shipped Swagger UI): public, no data.
BUILTIN_PUBLIC = {"/ui"}

REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/core/cone/state"): {"json": {"band": "B", "reason": "matrix test"}},
    ("GET", "/core/cone/decide"): {"params": {"engine": "flips", "action": "run"}},
    ("POST", "/core/cone/decide"): {"json": {"engine": "flips", "action": "run"}},
    ("POST", "/core/go/complete"): {"json": {"step_id": "preflight_view_dashboard"}},
    ("POST", "/core/go/start_session"): {"json": {}},
    ("POST", "/core/go/end_session"): {"json": {}},
    ("POST", "/core/webhooks"): {"json": {"url": "http://127.0.0.1:9/hook"}},
    ("POST", "/core/tokens"): {"json": {"name": "matrix", "scopes": ["viewer"]}},
    ("POST", "/core/auth/hello"): {"json": {"name": "viewer-bot", "nonce": "ab" * 32}},
}
RANK = {"viewer": 0, "operator": 1, "owner": 2}


def _api_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    routes = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            for method in sorted(context.methods or ()):
                assert context.path is not None
                routes.append((method, context.path, route))
        else:
            assert getattr(route, "path", None) in BUILTIN_PUBLIC, route
    return routes


def _guards(route: APIRoute) -> list[Guard]:
    return [d.call for d in route.dependant.dependencies if isinstance(d.call, Guard)]


def test_every_route_has_exactly_the_expected_guard(generous_app: FastAPI) -> None:
    seen = set()
    for method, path, route in _api_routes(generous_app):
        guards = _guards(route)
        assert len(guards) == 1, f"{method} {path} has {len(guards)} guards; give it one"
        assert (method, path) in EXPECTED, f"{method} {path} has no rule in the scope matrix"
        assert guards[0].scope == EXPECTED[(method, path)], f"{method} {path}"
        seen.add((method, path))
    assert seen == set(EXPECTED)


def _url(path: str) -> str:
    return path.replace("{session_id}", "01NOSUCHSESSION0000000000").replace("{name}", "nosuch")


def _fresh_code(client: TestClient) -> str:
    store = client.app.state.ctx.store  # type: ignore[attr-defined]
    return create_signin_code(store=store, actor="test", clock=utc_now).code


def _cases() -> list[tuple[str, str]]:
    return sorted(EXPECTED)


@pytest.mark.parametrize(("method", "path"), _cases())
def test_route_answers_by_scope(
    method: str, path: str, tokens: Tokens, local_client: TestClient
) -> None:
    needed = EXPECTED[(method, path)]
    kwargs = REQUESTS.get((method, path), {})
    if path == "/core/events/stream":
        # A live stream never ends, and the test client waits for the end:
        # with the hub closing, a request that passes the guard gets 503.
        local_client.app.state.ctx.get(EventHub).close()  # type: ignore[attr-defined]
    url = _url(path)
    if path == "/core/auth/signin":
        kwargs = {"json": {"code": _fresh_code(local_client)}}
    anonymous = local_client.request(method, url, **kwargs)
    if path == "/core/auth/signin":
        kwargs = {"json": {"code": _fresh_code(local_client)}}
    bad = local_client.request(
        method, url, headers={"Authorization": "Bearer vgo_not-a-real-token"}, **kwargs
    )
    if needed is None:
        assert anonymous.status_code in (200, 201), anonymous.text
        assert bad.status_code in (200, 201), bad.text
        return
    # A loopback client is nobody without a credential.
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    for scope in ("viewer", "operator", "owner"):
        resp = local_client.request(method, url, headers=tokens.header(scope), **kwargs)
        if RANK[scope] >= RANK[needed]:
            assert resp.status_code not in (401, 403), (scope, resp.text)
        else:
            assert resp.status_code == 403, (scope, resp.text)
            assert resp.json()["required_scope"] == needed
            assert needed in resp.json()["detail"]
