"""No input reaches a 500, and a refused write leaves nothing behind.

The reproduced cases (an overflowing time, an overflowing cursor, a body that
is not text), NaN and Infinity, deep or wide cone metrics; and the storage
layer refusing non-standard JSON inside a transaction, taking back the
writes made before it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.security.helpers import data_dir_digest
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.cone.store import CONE_STATE
from valhalla_gov.constants import MAX_FREE_FORM_DEPTH, MAX_FREE_FORM_KEYS
from valhalla_gov.storage import encoding
from valhalla_gov.storage.errors import UnstorableValueError
from valhalla_gov.storage.protocol import Store

POST_ROUTES = [
    "/core/cone/state",
    "/core/cone/decide",
    "/core/go/complete",
    "/core/go/start_session",
    "/core/go/end_session",
]
TIME_ROUTES = ["/core/go/sessions", "/core/audit/events"]


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


@pytest.mark.parametrize("path", [*TIME_ROUTES, "/core/go/insights"])
@pytest.mark.parametrize(
    "moment",
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59.999999Z"],
)
@pytest.mark.parametrize("field", ["since", "until"])
def test_times_out_of_range_are_422_or_served(
    client: TestClient, path: str, moment: str, field: str
) -> None:
    response = client.get(path, params={field: moment})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        # The time itself, or insights' buckets around it, leave the calendar
        # (or, for insights, a since in year 9999 is later than now).
        reasons = ("out of range", "years a date can hold", "since is later than until")
        assert any(reason in response.text for reason in reasons), response.text


@pytest.mark.parametrize("path", TIME_ROUTES)
@pytest.mark.parametrize("cursor", ["9" * 38, "9" * 19, "", "-1", "1e9", "٣"])
def test_cursors_out_of_range_are_422(client: TestClient, path: str, cursor: str) -> None:
    response = client.get(path, params={"cursor": cursor})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"] or cursor == ""


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"\xff\xfe"),
        ("application/json", b"\xff\xfe{"),
        ("application/json; charset=utf-16", '{"bogus": 1}'.encode("utf-16")),
        ("application/x-www-form-urlencoded", b"notes=%ff%fe"),
        ("multipart/form-data; boundary=x", b"--x\r\n\xff\r\n--x--"),
        ("application/octet-stream", bytes(range(256))),
        ("application/json", b"[" * 100_000),
        ("application/json", b'{"band": "D", "reason": "r", "metrics": {"a": NaN}}'),
    ],
)
def test_any_body_in_any_content_type_is_4xx_and_saves_nothing(
    client: TestClient, data_dir: Path, path: str, content_type: str, body: bytes
) -> None:
    before = data_dir_digest(data_dir)
    response = client.post(path, content=body, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500, response.text
    assert data_dir_digest(data_dir) == before


@pytest.mark.parametrize(
    "metrics",
    [
        _nested(MAX_FREE_FORM_DEPTH + 1),
        _nested(300),
        {f"k{i}": i for i in range(MAX_FREE_FORM_KEYS + 1)},
        {"rate": math.nan},
        {"rate": [math.inf]},
        {"rate": {"deep": -math.inf}},
    ],
    ids=["one-too-deep", "300-deep", "too-many-keys", "nan", "inf-in-list", "neg-inf"],
)
def test_cone_metrics_are_bounded_and_standard(
    client: TestClient, data_dir: Path, metrics: dict[str, Any]
) -> None:
    before = data_dir_digest(data_dir)
    # allow_nan: the client sends what a careless one would; depth beyond
    # Python's own limit cannot be encoded, so it is written by hand.
    body = json.dumps({"band": "D", "reason": "kpis", "metrics": metrics}, allow_nan=True)
    response = client.post(
        "/core/cone/state", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert data_dir_digest(data_dir) == before
    # Reads keep working for everyone.
    for path in (
        "/core/cone/state",
        "/core/go/summary",
        "/core/audit/events",
        "/core/audit/verify",
    ):
        assert client.get(path).status_code == 200, path


def test_metrics_at_the_limits_are_kept(client: TestClient) -> None:
    metrics = {"deep": _nested(MAX_FREE_FORM_DEPTH - 1), "ratio": 0.5}
    response = client.post(
        "/core/cone/state", json={"band": "C", "reason": "r", "metrics": metrics}
    )
    assert response.status_code == 200, response.text
    assert client.get("/core/cone/state").json()["metrics"] == metrics


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, {"a": [math.nan]}, _nested(encoding.MAX_DEPTH + 1)],
    ids=["nan", "inf", "-inf", "nested-nan", "too-deep"],
)
def test_storage_refuses_non_standard_json(value: Any) -> None:
    with pytest.raises(UnstorableValueError):
        encoding.canonical_json({"v": value})


def test_a_refused_value_takes_back_the_writes_before_it(store: Store) -> None:
    """By construction: the storage layer refuses before writing, and the
    transaction takes back what the same operation wrote earlier."""
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "A", "reason": "kept"})

    def half_saved() -> None:
        with store.transaction() as txn:
            txn.write_document(CONE_STATE, {"band": "D", "reason": "half"})
            txn.append_log(AUDIT_LOG, {"event": "X", "payload": {"v": math.nan}})

    with pytest.raises(UnstorableValueError):
        half_saved()
    assert store.read_document(CONE_STATE) == {"band": "A", "reason": "kept"}
    assert list(store.scan_log(AUDIT_LOG)) == []
    with pytest.raises(UnstorableValueError), store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "D", "metrics": {"v": math.inf}})
    assert store.read_document(CONE_STATE) == {"band": "A", "reason": "kept"}


def test_stored_files_hold_standard_json(client: TestClient, data_dir: Path) -> None:
    client.post("/core/cone/state", json={"band": "C", "reason": "r", "metrics": {"x": 1.5}})
    for name in ("cone_state.json", "audit.log"):
        text = (data_dir / name).read_text()
        assert "NaN" not in text
        assert "Infinity" not in text
