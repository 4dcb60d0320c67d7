"""422 bodies keep FastAPI's shape (``detail``: items with ``loc``, ``type``,
``msg``) but say the problem in words a person reads, and are spelt like
every other answer (compact JSON, UTF-8)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from valhalla_gov.plain_errors import PATTERN_WORDS, UNKNOWN_PATTERN, plain_message

# Bits of the validator's language that must not reach a person.
JARGON = ("^", "$'", "{0,", "[0-9", "Value error", "Input should", "String should",
          "Field required")  # fmt: skip


def _compact(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(node, list):
        for item in node:
            yield from _patterns(item)


def test_every_pattern_in_the_api_has_words(client: TestClient) -> None:
    schema = client.app.openapi()  # type: ignore[attr-defined]
    found = set(_patterns(schema))
    assert found, "the schema names no pattern: this test would hold nothing"
    assert found <= set(PATTERN_WORDS), found - set(PATTERN_WORDS)


@pytest.mark.parametrize(
    ("method", "path", "body", "loc", "says"),
    [
        ("post", "/core/tokens", {"name": "bad name!", "scopes": ["viewer"]}, ["body", "name"],
         "must be 1 to 64 letters, digits"),
        ("get", "/core/audit/verify?anchor=garbage", None, ["query", "anchor"],
         "must be SEQ:HASH as `valhalla audit head` prints it"),
        ("get", "/core/go/sessions?limit=lots", None, ["query", "limit"], "must be a whole number"),
        ("get", "/core/go/sessions?limit=501", None, ["query", "limit"], "must be at most 500"),
        ("post", "/core/go/start_session", {"notes": "n", "mood": 1}, ["body", "mood"],
         "is not a field this accepts"),
        ("post", "/core/cone/state", {"band": "B"}, ["body", "reason"], "is required"),
        ("post", "/core/cone/state", {"band": "Q", "reason": "r"}, ["body", "band"],
         "must be 'A', 'B', 'C' or 'D'"),
    ],
)  # fmt: skip
def test_a_422_says_the_problem_in_words(
    client: TestClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    loc: list[str],
    says: str,
) -> None:
    answer = client.request(method.upper(), path, json=body)
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["detail"]
    assert error["loc"] == loc
    assert isinstance(error["type"], str)
    assert error["msg"].startswith(says), error["msg"]
    assert not any(bit in answer.text for bit in JARGON), answer.text


def test_a_body_that_is_not_json_is_said_in_words(client: TestClient) -> None:
    json_type = {"content-type": "application/json"}
    answer = client.post("/core/go/start_session", content=b'{"notes": ', headers=json_type)
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert error["type"] == "json_invalid"
    assert error["msg"].startswith("is not valid JSON (expecting value")
    assert "JSON decode error" not in answer.text


def test_a_422_is_spelt_like_every_other_answer(client: TestClient) -> None:
    refused = client.post("/core/go/start_session", json={"notes": "caf\u00e9 \U0001f680" * 5000})
    assert refused.status_code == 422
    # Compact and UTF-8, as a 200 and a 404 are (no ", " spacing, no \u escapes).
    assert refused.content == _compact(refused.json())
    assert "caf\u00e9 \U0001f680".encode() in refused.content
    for other in (client.get("/core/go/session"), client.get("/core/go/sessions/nope")):
        assert other.content == _compact(other.json())


def test_a_lone_surrogate_echoed_in_a_422_stays_valid_json(client: TestClient) -> None:
    # Python's JSON reader takes an escaped lone surrogate; UTF-8 cannot hold it.
    raw = b'{"notes": "half \\ud800 a pair"}'
    refused = client.post(
        "/core/go/start_session", content=raw, headers={"content-type": "application/json"}
    )
    assert refused.status_code == 422
    refused.content.decode("utf-8")  # strict: valid UTF-8
    [error] = refused.json()["detail"]
    assert error["input"] == "half \ud800 a pair"
    assert b'"half \\ud800 a pair"' in refused.content


def test_plain_message_never_shows_an_unknown_pattern() -> None:
    error = {"type": "string_pattern_mismatch", "msg": "String should match pattern '^x$'",
             "ctx": {"pattern": "^x$"}}  # fmt: skip
    assert plain_message(error) == UNKNOWN_PATTERN
    assert plain_message({"type": "value_error", "msg": "Value error, too far"}) == "too far"
