"""Reads answered on the event loop (PostgreSQL): the generation is read by
one async query, and a cached read at it is exact across stores."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import sqlalchemy
from sqlalchemy import event

from tests.conftest import FakeClock, _truncate, owner_headers
from valhalla_gov.app import create_app
from valhalla_gov.auth.service import Authenticator, create_token
from valhalla_gov.auth.store import load_tokens
from valhalla_gov.compose import open_sql
from valhalla_gov.cone.store import CONE_STATE
from valhalla_gov.settings import Settings
from valhalla_gov.storage import aio, sql_fence
from valhalla_gov.storage.sql_backend import SqlStore, libpq_url, redact
from valhalla_gov.storage.sql_fence import GenerationFence

DONE_STEP = "preflight_view_dashboard"
# A scenario that hangs (an answer held forever) fails instead of stalling the run.
BOUND_S = 60


def _raw(value: Any | None) -> Any | None:
    return value


@pytest.fixture
def pair(pg_url: str) -> Iterator[tuple[SqlStore, SqlStore]]:
    """A reader (the server under test) and a writer standing for another replica."""
    _truncate(pg_url)
    reader, writer = open_sql(pg_url), open_sql(pg_url)
    assert isinstance(reader, SqlStore)
    assert isinstance(writer, SqlStore)
    yield reader, writer
    reader.close()
    writer.close()


def _cone_reader(store: SqlStore) -> Callable[[], Any]:
    """The cone state through the read cache, as a route's read makes it."""
    return lambda: store.read_cached(CONE_STATE, _raw)


def _statements(store: SqlStore) -> list[str]:
    seen: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _count(*args: Any) -> None:
        seen.append(str(args[2]))

    return seen


def test_a_cached_read_takes_one_async_query_and_no_pool_connection(
    pair: tuple[SqlStore, SqlStore],
) -> None:
    reader, writer = pair
    with writer.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "B"})

    async def scenario() -> None:
        async with reader.live():
            generation = await reader.current_generation()
            assert generation is not None

            read = _cone_reader(reader)
            assert reader.run_cached(read, generation) is None  # not cached yet
            assert read() == {"band": "B"}  # as the thread it is moved to
            statements = _statements(reader)
            again = await reader.current_generation()
            assert again == generation
            assert reader.run_cached(read, again) == ({"band": "B"},)
            assert statements == []

    asyncio.run(asyncio.wait_for(scenario(), BOUND_S))


def test_a_write_elsewhere_is_never_answered_from_the_cache(
    pair: tuple[SqlStore, SqlStore],
) -> None:
    reader, writer = pair

    read = _cone_reader(reader)

    async def scenario() -> None:
        async with reader.live():
            for n, band in enumerate("ABCD" * 10):
                with writer.transaction() as txn:
                    txn.write_document(CONE_STATE, {"band": band, "n": n})
                generation = await reader.current_generation()
                assert generation is not None
                # The cache holds the previous round's value, at an older generation.
                assert reader.run_cached(read, generation) is None, n
                assert read() == {"band": band, "n": n}
                assert reader.run_cached(read, generation) == ({"band": band, "n": n},)

    asyncio.run(asyncio.wait_for(scenario(), BOUND_S))


def test_a_change_made_outside_valhalla_is_seen_once_it_bumps_the_generation(
    pair: tuple[SqlStore, SqlStore],
) -> None:
    reader, _ = pair
    with reader.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "A"})

    read = _cone_reader(reader)
    assert read() == {"band": "A"}

    async def scenario() -> None:
        async with reader.live():
            with reader.engine.begin() as conn:
                conn.execute(
                    sqlalchemy.text("UPDATE documents SET body = :b WHERE name = :n"),
                    {"b": '{"band":"C"}', "n": CONE_STATE.name},
                )
                conn.execute(sqlalchemy.text("UPDATE store_generation SET n = n + 1"))
            generation = await reader.current_generation()
            assert reader.run_cached(read, generation) is None
            assert read() == {"band": "C"}

    asyncio.run(asyncio.wait_for(scenario(), BOUND_S))


def test_without_the_fence_nothing_is_answered_on_the_loop(pair: tuple[SqlStore, SqlStore]) -> None:
    reader, _ = pair
    ran: list[int] = []

    async def scenario() -> None:
        assert await reader.current_generation() is None  # outside live(): the CLI, tests
        assert reader.run_cached(lambda: ran.append(1), None) is None

    asyncio.run(asyncio.wait_for(scenario(), BOUND_S))
    assert ran == []


def test_an_unreachable_database_answers_none_and_is_not_retried_at_once(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad = sqlalchemy.make_url(pg_url).set(database="valhalla_no_such_db").render_as_string(False)
    fence = GenerationFence(libpq_url(bad), redact(bad))

    async def scenario() -> None:
        with caplog.at_level(logging.WARNING):
            assert await fence.read() is None
            assert await fence.read() is None  # within the retry interval: no new connect
        await fence.close()

    asyncio.run(asyncio.wait_for(scenario(), BOUND_S))
    failures = [r for r in caplog.records if "generation read" in r.getMessage()]
    assert len(failures) == 1
    assert "valhalla_no_such_db" in failures[0].getMessage()


class _CountedFence(GenerationFence):
    """The real fence, counting its queries; ``hold`` keeps an answer that
    came back from the database from reaching its waiters until set."""

    def __init__(self, url: str) -> None:
        super().__init__(libpq_url(url), redact(url))
        self.queries = 0
        self.hold: asyncio.Event | None = None

    async def _query(self) -> int | None:
        answer = await super()._query()
        if self._cursor is None:
            return answer  # skipped after a failure: nothing was sent
        self.queries += 1
        if self.hold is not None:
            await self.hold.wait()
        return answer


def test_readers_asking_together_share_a_query_sent_after_they_asked(
    pair: tuple[SqlStore, SqlStore], pg_url: str
) -> None:
    _, writer = pair
    fence = _CountedFence(pg_url)

    async def scenario() -> None:
        before = await fence.read()
        assert before is not None
        fence.queries = 0
        answers = await asyncio.gather(*(fence.read() for _ in range(20)))
        # The first is sent at once; the 19 that asked while it was on the
        # wire share the one sent after it.
        assert answers == [before] * 20
        assert fence.queries == 2

        # A query on the wire answers with what it read: a reader asking after
        # a write that landed meanwhile must not get that older answer.
        fence.hold = asyncio.Event()
        sent = fence.queries
        early = asyncio.ensure_future(fence.read())
        while fence.queries == sent:
            await asyncio.sleep(0.001)  # the early query has been sent
        with writer.transaction() as txn:
            txn.write_document(CONE_STATE, {"band": "C"})
        late = asyncio.ensure_future(fence.read())
        await asyncio.sleep(0.01)
        fence.hold.set()
        assert await early == before
        newer = await late
        assert newer is not None
        assert newer > before
        await fence.close()

    asyncio.run(asyncio.wait_for(scenario(), BOUND_S))


def test_a_reader_that_goes_away_does_not_cancel_the_others_answer(pg_url: str) -> None:
    fence = _CountedFence(pg_url)

    async def scenario() -> None:
        fence.hold = asyncio.Event()
        first, second = asyncio.ensure_future(fence.read()), asyncio.ensure_future(fence.read())
        third = asyncio.ensure_future(fence.read())  # shares its query with second
        await asyncio.sleep(0.01)
        first.cancel()
        second.cancel()
        fence.hold.set()
        assert isinstance(await third, int)
        assert first.cancelled()
        assert second.cancelled()
        assert isinstance(await fence.read(), int)  # the connection is still good
        await fence.close()

    asyncio.run(asyncio.wait_for(scenario(), BOUND_S))


def test_closing_answers_none_to_whoever_still_waits(pg_url: str) -> None:
    fence = _CountedFence(pg_url)

    async def scenario() -> None:
        fence.hold = asyncio.Event()  # never set: the answers never come back
        waiting = [asyncio.ensure_future(fence.read()) for _ in range(3)]
        await asyncio.sleep(0.05)
        await fence.close()
        assert await asyncio.gather(*waiting) == [None, None, None]

    asyncio.run(asyncio.wait_for(scenario(), BOUND_S))


def test_a_query_that_hangs_answers_none_within_the_timeout_and_is_not_retried_at_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sql_fence, "_TIMEOUT_S", 0.5)
    fence = _CountedFence(pg_url)

    async def scenario() -> None:
        fence.hold = asyncio.Event()  # never set: the answer never comes back
        with caplog.at_level(logging.WARNING):
            began = time.monotonic()
            assert list(await asyncio.gather(fence.read(), fence.read())) == [None, None]
            assert time.monotonic() - began < 0.9  # one timeout, not one per reader
            sent = fence.queries
            assert await fence.read() is None  # within the retry interval: nothing sent
            assert fence.queries == sent
        fence.hold = None
        monkeypatch.setattr(sql_fence, "_RETRY_S", 0.0)
        assert isinstance(await fence.read(), int)  # a new connection, once allowed
        await fence.close()

    asyncio.run(asyncio.wait_for(scenario(), BOUND_S))
    assert any("generation read" in r.getMessage() for r in caplog.records)


def test_a_declined_run_leaves_the_token_stamp_to_the_run_that_can_write(
    pair: tuple[SqlStore, SqlStore], clock: FakeClock
) -> None:
    reader, writer = pair
    _, token = create_token(store=writer, name="fence", scopes=["viewer"], actor="t", clock=clock)
    auth = Authenticator()
    load_tokens(store=reader)  # warm: only the last-used stamp needs the database

    def authenticate() -> Any:
        return auth.authenticate(store=reader, clock=clock, authorization=f"Bearer {token}")

    async def scenario() -> None:
        async with reader.live():
            generation = await reader.current_generation()
            assert reader.run_cached(authenticate, generation) is None  # the stamp is a write
            assert authenticate().name == "fence"  # as the thread it is moved to
            load_tokens(store=reader)
            generation = await reader.current_generation()
            known = reader.run_cached(authenticate, generation)  # stamped: no write now
            assert known is not None
            assert known[0].name == "fence"

    asyncio.run(asyncio.wait_for(scenario(), BOUND_S))
    stamped = next(t for t in load_tokens(store=writer) if t.name == "fence")
    assert stamped.last_used_at_utc is not None


def _generation_reads(statements: list[str]) -> int:
    return len([s for s in statements if "FROM store_generation" in s])


def test_a_served_request_reads_the_generation_once_and_its_cached_reads_need_no_query(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the app with its lifespan (the fence live), as `valhalla serve`
    runs it: after an end, GET session is answered from the cache on the
    loop; a complete's checks before its write use the request's generation."""
    _truncate(pg_url)
    app = create_app(Settings(database_url=pg_url, data_dir=tmp_path / "data"))
    store = app.state.ctx.store
    assert isinstance(store, SqlStore)
    owner = owner_headers(tmp_path / "data", store)
    statements = _statements(store)
    hops: list[object] = []
    threaded = aio.run_in_threadpool  # type: ignore[attr-defined]

    async def counted(fn: Any, *args: Any) -> Any:
        hops.append(fn)
        return await threaded(fn, *args)

    monkeypatch.setattr(aio, "run_in_threadpool", counted)

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://localhost", headers=owner
            ) as c:
                await c.get("/core/go/session")  # as the page does, polling it
                started = (await c.post("/core/go/start_session", json={})).json()
                ended = await c.post("/core/go/end_session", json={"notes": "done"})
                assert ended.status_code == 200
                statements.clear()
                hops.clear()
                session = (await c.get("/core/go/session")).json()
                assert session["id"] == started["id"]
                assert session["active"] is False
                assert session["end_notes"] == "done"
                # The guard authenticates in a worker thread (one plain hop):
                # its token read checks the generation once; the session
                # itself needs no query.
                assert statements == ["SELECT n FROM store_generation WHERE id = 1"]
                assert hops == []  # the route answered on the loop: the end left it parsed
                await c.post("/core/go/start_session", json={})
                statements.clear()
                done = await c.post("/core/go/complete", json={"step_id": DONE_STEP})
                assert done.status_code == 200, done.text
                # One each for the gate's and the guard's authentication (each
                # a plain thread hop), and one for the route's checks before
                # its write: the gate no longer reads a generation for it
                # through storage.aio (being removed).
                assert _generation_reads(statements) == 3
                for path in ("/core/go/summary", "/core/go/checklist", "/core/go/next_step"):
                    statements.clear()  # the page's polls: their reads at the request's read
                    polled = await c.get(path)
                    assert polled.status_code == 200, polled.text
                    # The guard's, and the route's (it no longer finds one the
                    # guard read through storage.aio).
                    assert _generation_reads(statements) == 2, path
                summary = (await c.get("/core/go/summary")).json()
                step = next(s for s in summary["checklist"]["steps"] if s["id"] == DONE_STEP)
                assert step["done"] is True

    asyncio.run(asyncio.wait_for(scenario(), BOUND_S))
    store.close()
