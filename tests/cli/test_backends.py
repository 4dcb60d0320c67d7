"""Choosing local or remote, paging, and how each HTTP answer maps to an exit
code (with a mock transport: no server needed). Local and remote are one
client on the same API, so the mapping is tested once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.cli.conftest import Cli, Seeder
from tests.live.server import free_port
from valhalla_gov.audit.models import AuditPage
from valhalla_gov.cli.client import (
    END_HINT,
    USAGE,
    CliError,
    Service,
    check_url,
    iter_pages,
    remote_service,
)
from valhalla_gov.cli.go import iter_sessions
from valhalla_gov.cli.local import local_service
from valhalla_gov.go.session_models import GoSession, SessionPage

Handler = Callable[[httpx.Request], httpx.Response]


def test_url_and_data_dir_exclude_each_other(cli: Cli) -> None:
    both = cli.local("go", "status", "--url", "http://127.0.0.1:1")
    assert both.exit_code == 2
    assert "either --url or --data-dir" in both.stderr


def test_a_token_without_a_url_is_a_usage_error(cli: Cli) -> None:
    result = cli.local("go", "status", "--token", "vgo_x")
    assert result.exit_code == 2
    assert "pass --url too" in result.stderr


def test_a_url_that_is_not_one_is_a_usage_error(cli: Cli) -> None:
    result = cli.run("go", "status", "--url", "localhost:8000")
    assert result.exit_code == 2
    assert "http://127.0.0.1:8000" in result.stderr
    assert check_url("http://h:9/prefix/") == "http://h:9/prefix"
    with pytest.raises(CliError):
        check_url("http://h:notaport")


def test_valhalla_url_from_the_environment_unless_a_data_dir_is_given(cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    remote = cli.run("go", "status", env={"VALHALLA_URL": url})
    assert remote.exit_code == 1
    assert f"cannot reach {url}" in remote.stderr
    assert "is `valhalla serve` running?" in remote.stderr
    local = cli.run("go", "status", "--data-dir", str(cli.data_dir), env={"VALHALLA_URL": url})
    assert local.exit_code == 0, local.stderr
    assert "no session has been started yet" in local.stdout


def test_paging_follows_the_cursor(seeder: Seeder, data_dir: Path) -> None:
    made = [seeder.session(minutes=1) for _ in range(5)]
    service = local_service(data_dir)
    assert [s.id for s in iter_sessions(service, page_size=2)] == [s.id for s in reversed(made)]
    since = datetime(2026, 1, 3, tzinfo=UTC)
    assert [s.id for s in iter_sessions(service, since=since, page_size=1)] == [
        s.id for s in reversed(made[2:])
    ]
    seqs = [e.seq or 0 for e in iter_pages(service, AuditPage, "/core/audit/events", limit=3)]
    assert seqs == sorted(seqs, reverse=True)
    assert len(seqs) == 10  # a start and an end per session


def _remote(handler: Handler, token: str | None = "vgo_t") -> Service:
    return remote_service(
        "http://valhalla.test:8000/", token, transport=httpx.MockTransport(handler)
    )


def _answer(status: int, body: Any = None, **headers: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, text="<html>proxy error</html>", headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


def _failure(handler: Handler) -> CliError:
    with pytest.raises(CliError) as caught:
        _remote(handler).get(GoSession, "/core/go/session")
    return caught.value


def test_remote_sends_the_token_and_the_query() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    page = _remote(handler).get(
        SessionPage,
        "/core/go/sessions",
        limit=5,
        cursor=None,
        since=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        until=None,
    )
    assert page.items == []
    request = seen[0]
    assert request.headers["Authorization"] == "Bearer vgo_t"
    assert request.url.path == "/core/go/sessions"
    assert dict(request.url.params) == {"limit": "5", "since": "2026-01-02T03:04:05.000000Z"}
    assert "Authorization" not in _sent_headers(None)


def _sent_headers(token: str | None) -> dict[str, str]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=GoSession().model_dump())

    _remote(handler, token).get(GoSession, "/core/go/session")
    return dict(seen[0].headers)


@pytest.mark.parametrize(
    ("status", "body", "code", "words"),
    [
        (409, {"detail": "a GO session is already active"}, 1, "refused: a GO session"),
        (401, {"detail": "invalid or revoked token"}, 1, "pass --token"),
        (403, {"detail": "this needs the 'owner' scope"}, 1, "--scopes"),
        (404, {"detail": "unknown step 'x'; known steps: a, b"}, USAGE, "known steps: a, b"),
        (
            422,
            {"detail": [{"loc": ["body", "notes"], "msg": "too long", "type": "x"}]},
            USAGE,
            "notes: too long",
        ),
        (429, {"detail": "too many starts"}, 1, "retry in 7s"),
        (
            503,
            {"detail": "storage unavailable: x", "file": "cone_state.json"},
            1,
            "cone_state.json",
        ),
        (500, {"detail": "internal server error"}, 1, "HTTP 500"),
        (502, None, 1, "without JSON"),
    ],
)
def test_http_failures_map_to_exit_codes(status: int, body: Any, code: int, words: str) -> None:
    error = _failure(_answer(status, body, **{"Retry-After": "7"}))
    assert error.code == code
    assert words in error.message


def test_an_answer_of_the_wrong_shape_is_refused() -> None:
    error = _failure(_answer(200, {"active": "very"}))
    assert error.code == 1
    assert "unexpected GoSession" in error.message


def test_a_timeout_is_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    error = _failure(handler)
    assert error.code == 1
    assert "cannot reach http://valhalla.test:8000" in error.message


def test_start_conflict_names_the_way_out() -> None:
    body = {"detail": "a GO session is already active; end it first", "session": {}}
    with pytest.raises(CliError) as caught:
        _remote(_answer(409, body)).post(
            GoSession, "/core/go/start_session", {"notes": "x"}, conflict_hint=END_HINT
        )
    assert caught.value.message.endswith("(`valhalla go end` ends it)")
    assert caught.value.code == 1
