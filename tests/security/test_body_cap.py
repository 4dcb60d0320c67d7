"""The default body cap, pinned: 64 KiB, refused past it before a byte is parsed."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from valhalla_gov.settings import Settings

DEFAULT_CAP = 64 * 1024


def _body(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes."""
    head = {"band": "A", "reason": ""}
    padding = size - len(json.dumps(head, separators=(",", ":")))
    return json.dumps({**head, "reason": "x" * padding}, separators=(",", ":")).encode()


def test_the_default_cap_is_64_kib_and_holds_at_the_byte(client: TestClient) -> None:
    assert Settings().max_body_bytes == DEFAULT_CAP
    headers = {"content-type": "application/json"}
    at_cap = client.post("/core/cone/state", content=_body(DEFAULT_CAP), headers=headers)
    assert at_cap.status_code == 422  # read and parsed: the reason is too long
    past = client.post("/core/cone/state", content=_body(DEFAULT_CAP + 1), headers=headers)
    assert past.status_code == 413
    assert "65536 bytes" in past.json()["detail"]
