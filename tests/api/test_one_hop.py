"""Sync routes answered in one worker-thread hop (``routing.one_hop``): the
same bytes, headers and status FastAPI would send, with half the hops."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

import anyio.to_thread
import pytest
from fastapi import Depends, FastAPI, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel

from valhalla_gov.routing import one_hop


class Thing(BaseModel):
    name: str
    tags: list[str]
    nested: dict[str, Any]


class Other(BaseModel):
    name: str


THING = Thing(name="naïve \u2028 line", tags=["a", "b"], nested={"x": [1, 2.5, None]})


async def stamped(response: Response) -> None:
    response.headers["X-From-Dependency"] = "yes"


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/plain", response_model=Thing)
    def plain() -> Thing:
        return THING

    @app.get("/hop", response_model=Thing, dependencies=[Depends(stamped)])
    @one_hop
    def hop(n: int = 0) -> Thing:
        return THING.model_copy(update={"tags": [str(n)]}) if n else THING

    @app.post("/own", response_model=Thing)
    @one_hop
    def own(response: Response, _: Annotated[None, Depends(stamped)]) -> Thing:
        response.headers["X-From-Route"] = "too"
        response.status_code = 202
        return THING

    @app.get("/wrong", response_model=Thing)
    @one_hop
    def wrong() -> Thing:
        return Other(name="x")  # type: ignore[return-value]

    return app


@pytest.fixture
def mini() -> Iterator[TestClient]:
    with TestClient(_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[Callable[..., Any]]:
    """Every function sent to a worker thread (FastAPI's and ours alike)."""
    seen: list[Callable[..., Any]] = []
    real = anyio.to_thread.run_sync

    async def counted(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        seen.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    return seen


def test_the_bytes_are_the_ones_fastapi_sends_in_one_hop_not_two(
    mini: TestClient, hops: list[Callable[..., Any]]
) -> None:
    plain = mini.get("/plain")
    assert len(hops) == 2  # FastAPI: the route, then the response model check
    hops.clear()
    hop = mini.get("/hop")
    assert len(hops) == 1
    assert hop.status_code == plain.status_code == 200
    assert hop.content == plain.content
    assert hop.headers["content-type"] == plain.headers["content-type"]
    assert hop.headers["content-length"] == str(len(plain.content))
    assert mini.get("/hop", params={"n": 7}).json()["tags"] == ["7"]


def test_headers_and_status_set_by_dependencies_and_the_route_are_kept(
    mini: TestClient,
) -> None:
    hop = mini.get("/hop")
    assert hop.headers["X-From-Dependency"] == "yes"
    own = mini.post("/own")
    assert own.status_code == 202
    assert own.headers["X-From-Dependency"] == "yes"
    assert own.headers["X-From-Route"] == "too"
    assert own.json()["name"] == THING.name


def test_query_validation_and_the_schema_are_fastapis(mini: TestClient) -> None:
    assert mini.get("/hop", params={"n": "x"}).status_code == 422
    schema = mini.get("/openapi.json").json()
    hop = schema["paths"]["/hop"]["get"]
    assert [p["name"] for p in hop["parameters"]] == ["n"]  # no trace of the carrier
    ok = hop["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Thing"}
    assert "parameters" not in schema["paths"]["/own"]["post"]


def test_another_model_than_the_declared_one_is_an_error_not_a_silent_answer(
    mini: TestClient,
) -> None:
    assert mini.get("/wrong").status_code == 500

    def not_a_model() -> dict[str, str]:
        return {}

    with pytest.raises(TypeError, match="pydantic model"):
        one_hop(not_a_model)  # type: ignore[arg-type]


def test_the_apps_write_routes_keep_their_headers(client: TestClient) -> None:
    ended = client.post("/core/go/end_session", json={"notes": "nothing to end"})
    assert ended.status_code == 200
    assert ended.headers["Valhalla-Noop"] == "true"
    assert ended.headers["content-type"] == "application/json"
    started = client.post("/core/go/start_session", json={})
    assert started.status_code == 200
    assert "Valhalla-Noop" not in started.headers
    assert started.json()["active"] is True
