"""Schemathesis against the app's own OpenAPI schema, every operation.

The app runs in process (ASGI) on a fresh data dir with generous rate limits,
and every request that carries no Authorization of its own carries the data
dir's owner credential, so every operation is really exercised rather than
refused with 401. Generation is derandomised (same cases every run). Checks:
no 5xx, every status documented, every response body matches its schema.

The violations it found once (an invalid cursor's 422 body, a non-UTF-8
body's 400, decide's undocumented 404) are fixed and kept at the bottom as
one-request regression tests.
"""

from __future__ import annotations

import atexit
import json
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err, Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import owner_headers
from valhalla_gov.app import create_app
from valhalla_gov.settings import Settings

pytestmark = [pytest.mark.reliability]

EXAMPLES_PER_OPERATION = 25
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]

# The schema is read from the app at import (collection) time, so the app
# needs a data dir then; it is removed when the test process exits.
_DATA_DIR = Path(tempfile.mkdtemp(prefix="valhalla-fuzz-"))
atexit.register(shutil.rmtree, _DATA_DIR, True)
APP = create_app(
    Settings(
        data_dir=_DATA_DIR,
        rate_limit_start_session="1000000/hour",
        rate_limit_writes="1000000/minute",
    )
)
LOOPBACK = ("127.0.0.1", 50000)
OWNER = owner_headers(_DATA_DIR)
_OWNER_HEADER = (b"authorization", OWNER["Authorization"].encode())


async def owner_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The app as its owner uses it: the owner credential on every request
    that does not carry an Authorization of its own."""
    if scope["type"] == "http" and not any(k == b"authorization" for k, _ in scope["headers"]):
        scope = {**scope, "headers": [*scope["headers"], _OWNER_HEADER]}
    await APP(scope, receive, send)


# The event stream's answer never ends (it is live until the client goes),
# which a request/response fuzzer cannot wait for: tests/events drives it.
STREAM = "/core/events/stream"
schema = schemathesis.openapi.from_asgi("/openapi.json", owner_app).exclude(path=STREAM)
# The same operations with values that break the schema (query strings and
# bodies alike): every answer must still be a 4xx, never a 5xx. Operations
# that take no input at all (no parameter, no body, no credentials) have
# nothing to break: left out here, not skipped (checked below).
NO_INPUT = "^/core/(healthz|readyz)$"
negative = (
    schemathesis.openapi.from_asgi("/openapi.json", owner_app)
    .exclude(path=STREAM)
    .exclude(path_regex=NO_INPUT)
)
negative.config.generation.update(modes=[GenerationMode.NEGATIVE])

CASES: Counter[str] = Counter()
STATUSES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _fuzz_figures(figures_path: Path) -> Iterator[None]:
    yield
    if not CASES:
        return
    figures = {
        "operations": len(CASES),
        "cases": sum(CASES.values()),
        "cases_per_operation": dict(sorted(CASES.items())),
        "statuses": dict(sorted(STATUSES.items())),
        "examples_per_operation_setting": EXAMPLES_PER_OPERATION,
    }
    existing = json.loads(figures_path.read_text()) if figures_path.exists() else {}
    figures_path.write_text(json.dumps({**existing, "fuzz": figures}, indent=2) + "\n")
    print(f"\n[fuzz] {json.dumps(figures)}\nfigures written to {figures_path}")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case: Any) -> None:
    label = case.operation.label
    response = case.call()
    CASES[label] += 1
    STATUSES[str(response.status_code)] += 1
    case.validate_response(response, checks=CHECKS)


@negative.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_invalid_input_to_every_operation_is_a_4xx(case: Any) -> None:
    response = case.call()
    CASES[f"negative {case.operation.label}"] += 1
    STATUSES[str(response.status_code)] += 1
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500, (case.operation.label, response.text)


def test_the_operations_left_out_of_the_negative_pass_take_no_input() -> None:
    spec = APP.openapi()
    left_out = {path: ops for path, ops in spec["paths"].items() if re.match(NO_INPUT, path)}
    assert sorted(left_out) == ["/core/healthz", "/core/readyz"]
    for path, ops in left_out.items():
        for method, op in ops.items():
            taken = (op.get("parameters"), op.get("requestBody"), op.get("security"))
            assert taken == (None, None, None), (method, path, taken)


def test_every_operation_is_fuzzed() -> None:
    results = list(schema.get_all_operations())
    broken = [result.err() for result in results if isinstance(result, Err)]
    assert not broken, f"operations schemathesis cannot read: {broken}"
    labels = {result.ok().label for result in results if isinstance(result, Ok)}
    assert len(labels) >= 21, sorted(labels)


# -- the violations the fuzzing found once, kept as one-request regressions --


@pytest.fixture
def owner() -> Iterator[TestClient]:
    with TestClient(APP, raise_server_exceptions=False, client=LOOPBACK, headers=OWNER) as client:
        yield client


def _violations(method: str, path: str, response: Any, **case: Any) -> str | None:
    """What the fuzz checks say about ``response`` to this request (None: fine)."""
    try:
        schema[path][method].Case(**case).validate_response(response, checks=CHECKS)
    except FailureGroup as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("path", ["/core/audit/events", "/core/go/sessions"])
def test_an_invalid_cursor_answers_the_documented_422(owner: TestClient, path: str) -> None:
    query = {"cursor": "not-a-cursor"}
    response = owner.get(path, params=query)
    assert response.status_code == 422
    assert _violations("GET", path, response, query=query) is None


@pytest.mark.parametrize(
    "path",
    ["/core/cone/state", "/core/go/complete", "/core/go/start_session", "/core/go/end_session"],
)
def test_a_body_that_is_not_utf8_answers_as_documented(owner: TestClient, path: str) -> None:
    response = owner.post(path, content=b"\xff\xfe{", headers={"content-type": "application/json"})
    assert response.status_code < 500
    assert _violations("POST", path, response, body={}) is None


def test_an_unknown_engine_answers_a_documented_404(owner: TestClient) -> None:
    query = {"engine": "nope", "action": "run"}
    response = owner.get("/core/cone/decide", params=query)
    assert response.status_code == 404
    assert _violations("GET", "/core/cone/decide", response, query=query) is None


# -- the three 500s of the security review (issue #10), over the same app --


@pytest.mark.parametrize("path", ["/core/go/sessions", "/core/audit/events"])
def test_a_time_that_overflows_in_utc_is_a_documented_422(owner: TestClient, path: str) -> None:
    query = {"since": "9999-12-31T23:59:59-23:59"}
    response = owner.get(path, params=query)
    assert response.status_code == 422
    assert _violations("GET", path, response, query=query) is None


@pytest.mark.parametrize("path", ["/core/go/sessions", "/core/audit/events"])
def test_a_cursor_past_64_bits_is_a_documented_422(owner: TestClient, path: str) -> None:
    query = {"cursor": "9" * 38}
    response = owner.get(path, params=query)
    assert response.status_code == 422
    assert _violations("GET", path, response, query=query) is None


def test_a_text_plain_body_that_is_not_utf8_is_a_documented_422(owner: TestClient) -> None:
    path = "/core/go/end_session"
    response = owner.post(path, content=b"\xff\xfe", headers={"content-type": "text/plain"})
    assert response.status_code == 422
    assert _violations("POST", path, response, body={}) is None
