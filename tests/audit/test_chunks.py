"""The chunked check (``_clean_hashes``) accepts exactly what the line check does.

Each forged line below has a hash recomputed the way the chunk computes it
(orjson's sorted spelling), so only the chunk's other checks can refuse it;
the line-by-line check (``_check``) refuses each. Placed in the middle of a
chunk of several hundred lines, each must fail verify at its own seq.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.audit.helpers import synthetic_chain, write_lines
from valhalla_gov.audit.service import _CHUNK, verify_chain
from valhalla_gov.storage.json_backend import JsonStore

INDEX = _CHUNK + _CHUNK // 2  # the middle of the second chunk


def _orjson_hash(prev: str, record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(
        prev.encode() + b"\n" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


def _float_seq(record: dict[str, Any]) -> None:
    record["seq"] = float(record["seq"])


def _string_seq(record: dict[str, Any]) -> None:
    record["seq"] = str(record["seq"])


def _upper_hash(record: dict[str, Any]) -> None:
    record["hash"] = record["hash"].upper()


FORGERIES: dict[str, Callable[[dict[str, Any]], None]] = {
    "seq as a float": _float_seq,
    "seq as a string": _string_seq,
    "hash in upper case": _upper_hash,
}


@pytest.mark.parametrize("forge", list(FORGERIES))
def test_a_forged_line_mid_chunk_fails_at_its_seq(
    jstore: JsonStore, tmp_path: Path, forge: str
) -> None:
    records = [json.loads(line) for line in synthetic_chain(3 * _CHUNK)]
    record = records[INDEX]
    if forge == "hash in upper case":
        FORGERIES[forge](record)
    else:
        FORGERIES[forge](record)
        record["hash"] = _orjson_hash(record["prev"], record)
    # The lines after it link to it and hash right: only the forged line is wrong.
    prev = record["hash"]
    for after in records[INDEX + 1 :]:
        after["prev"] = prev
        after["hash"] = prev = _orjson_hash(prev, after)
    write_lines(tmp_path / "data" / "audit.log", [orjson.dumps(r) for r in records])
    result = verify_chain(store=jstore)
    assert not result.ok, result
    assert result.first_bad_seq == INDEX + 1
    assert result.events == INDEX


def test_a_long_clean_chain_verifies_across_chunks(jstore: JsonStore, tmp_path: Path) -> None:
    write_lines(tmp_path / "data" / "audit.log", synthetic_chain(3 * _CHUNK + 7))
    result = verify_chain(store=jstore)
    assert result.ok
    assert result.events == 3 * _CHUNK + 7
