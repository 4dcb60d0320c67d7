"""Numbers at the edge: what is refused before it is stored, and how the
refusal reads.

Cone metrics (the one free-form JSON a client sends) take integers within
signed 64 bits and finite numbers only; anything else is a 422 naming the
field, and nothing is written. A 422 body is always valid JSON: NaN and
Infinity in the echoed input come back as strings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.security.helpers import data_dir_digest

CONE = "/core/cone/state"
JSON = {"content-type": "application/json"}


def _strict(text: str) -> Any:
    """``text`` parsed as JSON proper: NaN, Infinity and -Infinity refused."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "number",
    ["9223372036854775808", "-9223372036854775809", "18446744073709551615", "1" * 400],
    ids=["2^63", "-2^63-1", "2^64-1", "400-digits"],
)
def test_metrics_integers_outside_signed_64_bits_are_422(
    client: TestClient, data_dir: Path, number: str
) -> None:
    before = data_dir_digest(data_dir)
    body = '{"band": "C", "reason": "r", "metrics": {"a": [1, {"b": ' + number + "}]}}"
    response = client.post(CONE, content=body, headers=JSON)
    assert response.status_code == 422, response.text
    detail = _strict(response.text)["detail"]
    assert detail[0]["loc"] == ["body", "metrics"]
    assert "outside signed 64 bits" in detail[0]["msg"]
    assert data_dir_digest(data_dir) == before
    assert client.get("/core/audit/verify").json()["ok"] is True


def test_metrics_integers_at_the_64_bit_limits_are_kept(client: TestClient) -> None:
    metrics = {"max": 2**63 - 1, "min": -(2**63)}
    response = client.post(CONE, json={"band": "C", "reason": "r", "metrics": metrics})
    assert response.status_code == 200, response.text
    assert client.get(CONE).json()["metrics"] == metrics
    assert client.get("/core/audit/verify").json()["ok"] is True


@pytest.mark.parametrize(
    ("body", "loc", "echoed"),
    [
        ('{"band": "C", "reason": "r", "metrics": {"a": NaN}}', ["body", "metrics"], {"a": "NaN"}),
        (
            '{"band": "C", "reason": "r", "metrics": {"a": [Infinity, -Infinity]}}',
            ["body", "metrics"],
            {"a": ["Infinity", "-Infinity"]},
        ),
        ('{"band": "C", "reason": "r", "metrics": {"a": 1e400}}', ["body", "metrics"], None),
        ('{"band": NaN, "reason": "r"}', ["body", "band"], "NaN"),
        ('{"band": "C", "reason": -Infinity}', ["body", "reason"], "-Infinity"),
    ],
    ids=["nan", "infinities", "1e400", "nan-band", "infinite-reason"],
)
def test_a_422_echoing_nan_or_infinity_is_valid_json(
    client: TestClient, data_dir: Path, body: str, loc: list[str], echoed: Any
) -> None:
    before = data_dir_digest(data_dir)
    response = client.post(CONE, content=body, headers=JSON)
    assert response.status_code == 422, response.text
    detail = _strict(response.text)["detail"]
    assert [item["loc"] for item in detail] == [loc]
    assert {"type", "loc", "msg"} <= set(detail[0])
    if echoed is not None:
        assert detail[0]["input"] == echoed
    else:  # 1e400 reads as Infinity
        assert detail[0]["input"] == {"a": "Infinity"}
    assert data_dir_digest(data_dir) == before
