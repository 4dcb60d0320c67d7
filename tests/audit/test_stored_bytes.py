"""The walk checks each line against its stored bytes first, and that check
accepts exactly the lines the exact check accepts, or lines that tell the
same story.

Each forgery below carries a hash computed the way the first check computes
it (SHA-256 over ``prev``, a newline and the stored line without its
``"hash"`` member), so only the check's other conditions can refuse it; the
exact check refuses each. And lines an earlier version wrote in another
spelling, with the hash of the canonical one, still verify.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.audit.helpers import store_lines, synthetic_chain
from valhalla_gov.audit.service import verify_chain
from valhalla_gov.storage.protocol import Store

COUNT = 6
BAD = 3  # the forged line's seq


def _backend(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["store"])


def _spelled(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _over_stored_bytes(prev: str, line: bytes, digest: str) -> bytes:
    """``line``, whose ``"hash"`` member holds the placeholder ``digest``,
    with that member's value the SHA-256 of ``prev``, a newline and the line
    without the member: what the first check computes."""
    member = f',"hash":"{digest}"'.encode()
    assert line.count(member) == 1
    real = hashlib.sha256(prev.encode() + b"\n" + line.replace(member, b"")).hexdigest()
    return line.replace(member, f',"hash":"{real}"'.encode())


PLACEHOLDER = "f" * 64


def _seq_as(value: Any) -> Callable[[dict[str, Any]], bytes]:
    def forge(record: dict[str, Any]) -> bytes:
        line = _spelled({**record, "seq": value, "hash": PLACEHOLDER})
        return _over_stored_bytes(record["prev"], line, PLACEHOLDER)

    return forge


def _upper_case_hash(record: dict[str, Any]) -> bytes:
    line = _spelled({**record, "hash": PLACEHOLDER})
    line = _over_stored_bytes(record["prev"], line, PLACEHOLDER)
    digest = json.loads(line)["hash"]
    return line.replace(digest.encode(), digest.upper().encode())


def _member_in_the_payload(record: dict[str, Any]) -> bytes:
    # The member is where the first check would remove it from, but inside
    # the payload, not among the top-level members: the line has no hash.
    body = {k: v for k, v in record.items() if k != "hash"}
    line = _spelled({**body, "payload": {**body["payload"], "a": 0, "hash": PLACEHOLDER}})
    return _over_stored_bytes(record["prev"], line, PLACEHOLDER)


FORGERIES: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "seq as a float": _seq_as(float(BAD)),
    "seq as a string": _seq_as(str(BAD)),
    "seq as true": _seq_as(True),
    "hash in upper case": _upper_case_hash,
    "hash member inside the payload": _member_in_the_payload,
}


def _stored_hash(line: bytes) -> str:
    record = json.loads(line)
    return str(record.get("hash") or record["payload"]["hash"])


@pytest.mark.parametrize("forge", list(FORGERIES))
def test_a_line_hashed_over_its_stored_bytes_still_needs_the_chain_fields_right(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path, forge: str
) -> None:
    lines = synthetic_chain(COUNT)
    records = [json.loads(line) for line in lines]
    index = 0 if forge == "seq as true" else BAD - 1  # true is 1: the first line then
    lines[index] = FORGERIES[forge](records[index])
    # The lines after it link to it and hash right: only the forged line is wrong.
    prev = _stored_hash(lines[index])
    for at in range(index + 1, COUNT):
        body = {**records[at], "prev": prev, "hash": PLACEHOLDER}
        lines[at] = _over_stored_bytes(prev, _spelled(body), PLACEHOLDER)
        prev = _stored_hash(lines[at])
    store_lines(_backend(request), tmp_path, lines)

    result = verify_chain(store=store)
    assert not result.ok, result
    assert (result.first_bad_seq, result.events) == (index + 1, index), result


def _older_spelling(line: bytes) -> bytes:
    """The record as Python's json module writes it by default: keys in the
    writer's order, spaces after separators, non-ASCII escaped."""
    record = json.loads(line)
    order = ["ts_utc", "event", "payload", "seq", "actor", "prev", "hash"]
    return json.dumps({key: record[key] for key in order}).encode()


def test_lines_in_another_spelling_with_the_canonical_hash_verify(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path
) -> None:
    lines = synthetic_chain(COUNT)
    older = [_older_spelling(line) for line in lines[:BAD]] + lines[BAD:]
    assert older[0] != lines[0]
    store_lines(_backend(request), tmp_path, older)
    result = verify_chain(store=store)
    assert (result.ok, result.events) == (True, COUNT), result
    # And an edit in that spelling is still found at its line.
    older[1] = older[1].replace(b'"i": 2', b'"i": 9')
    store_lines(_backend(request), tmp_path, older)
    result = verify_chain(store=store)
    assert (result.ok, result.first_bad_seq) == (False, 2), result
