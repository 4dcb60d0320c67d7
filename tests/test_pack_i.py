"""The seed's PACK I testing points: imports, model defaults, routes on `core`."""

from __future__ import annotations

from fastapi.routing import APIRoute, iter_route_contexts

from valhalla_gov.compose import open_json
from valhalla_gov.core_router import core
from valhalla_gov.go.session_models import GoSession
from valhalla_gov.go.session_reads import get_session
from valhalla_gov.go.session_router import router
from valhalla_gov.go.session_service import end_session, start_session
from valhalla_gov.go.session_store import load_session, save_session


def test_session_modules_expose_the_seed_names() -> None:
    assert callable(load_session)
    assert callable(save_session)
    assert callable(get_session)
    assert callable(start_session)
    assert callable(end_session)
    assert {r.path for r in router.routes if isinstance(r, APIRoute)} >= {
        "/go/session",
        "/go/start_session",
        "/go/end_session",
    }


def test_model_defaults() -> None:
    session = GoSession(active=False)
    assert session.active is False
    assert session.started_at_utc is None
    assert session.snapshot is None


def test_get_session_returns_a_go_session(tmp_path: object) -> None:
    from pathlib import Path

    store = open_json(Path(str(tmp_path)) / "data")
    assert isinstance(get_session(store=store), GoSession)


def test_core_router_carries_every_go_route() -> None:
    # FastAPI >= 0.137 keeps included routers as a tree in `core.routes`;
    # iter_route_contexts is its public way to list the effective paths.
    routes = {r.path for r in iter_route_contexts(core.routes)}
    for path in (
        "/core/go/session",
        "/core/go/start_session",
        "/core/go/end_session",
        "/core/go/sessions",
        "/core/go/sessions/{session_id}",
        "/core/go/summary",
        "/core/go/checklist",
        "/core/go/next_step",
        "/core/go/complete",
    ):
        assert path in routes
