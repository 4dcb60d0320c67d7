"""Verify is total: whatever a stored line holds, the answer is a result.

A hostile line (a number past every limit, NaN, nesting past the parsers'
limits, JSON that is not an object, bytes that are not UTF-8, chain fields
missing or of the wrong type, no JSON at all) after the first chained line
breaks the chain at its own seq, on every backend, through ``verify_chain``
and health's ``ChainWatcher`` alike: never an exception. And a line an
earlier version wrote honestly with such a value (a 400-digit integer in
cone metrics, before the edge refused them) still verifies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.audit.helpers import record_event, store_lines, synthetic_chain
from tests.conftest import FakeClock
from valhalla_gov.audit.service import GENESIS, ChainWatcher, chain_hash, verify_chain
from valhalla_gov.cli import app as cli_app
from valhalla_gov.storage.encoding import canonical_bytes
from valhalla_gov.storage.protocol import Store

GOOD = synthetic_chain(4)
HASHES = [json.loads(line)["hash"] for line in GOOD]
HUGE = "1" * 400

# Values no store would write now, spelled as they could stand in a line.
_TOKENS = [
    HUGE,
    "9" * 5000,  # past Python's limit on an integer's digits
    "18446744073709551616",
    "-9223372036854775809",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "[" * 100_000 + "]" * 100_000,  # past every parser's nesting limit
    "[" * 70 + "]" * 70,  # past the storage layer's
    '"\\ud800"',  # a lone surrogate
    '"\\u0000"',
    "true",
    "null",
    "2.0",
    "{}",
    '"x"',
]


def _chained(seq: int, fields: dict[str, str]) -> bytes:
    """A line shaped like a chained event at ``seq``, some of whose JSON values
    (written as raw text) are replaced by ``fields``; absent ones dropped."""
    prev = GENESIS if seq == 1 else HASHES[seq - 2]
    values = {
        "actor": '"op"',
        "event": '"tick"',
        "hash": json.dumps("ab" * 32),
        "payload": '{"i":1}',
        "prev": json.dumps(prev),
        "seq": str(seq),
        "ts_utc": '"2026-01-01T00:00:00.000000Z"',
        **fields,
    }
    members = ",".join(f'"{key}":{value}' for key, value in values.items() if value != "-")
    return ("{" + members + "}").encode("utf-8", "surrogatepass")


_field_values = st.one_of(st.sampled_from([*_TOKENS, "-"]), st.text(max_size=8).map(json.dumps))
_HOSTILE = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.sampled_from(_TOKENS).map(str.encode),
    st.dictionaries(
        st.sampled_from(["actor", "event", "hash", "payload", "prev", "seq"]),
        _field_values,
        max_size=3,
    ).map(lambda fields: _chained(2, fields)),
)


def _backend(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["store"])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(hostile=_HOSTILE)
@example(hostile=_chained(2, {"payload": '{"n":' + HUGE + "}"}))  # the reproduced one
@example(hostile=_chained(2, {"seq": HUGE}))
@example(hostile=_chained(2, {"payload": "NaN"}))
@example(hostile=_chained(2, {"payload": '"\\ud800"'}))
@example(hostile=_chained(2, {"prev": '"\\u00e9' + "0" * 63 + '"'}))
@example(hostile=_chained(2, {"hash": "-", "seq": "-", "prev": "-"}))  # a legacy-looking line
@example(hostile=_chained(2, {"seq": "true"}))
@example(hostile=_chained(2, {"hash": "7"}))
@example(hostile=b'{"actor":"op","payload":' + b"[" * 3000 + b"]" * 3000 + b"}")
@example(hostile=b'{"t":"\xff\xfe"}')
@example(hostile=b"[1,2]")
@example(hostile=b"this is not JSON")
def test_a_hostile_line_breaks_the_chain_at_its_seq_never_the_verify(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path, hostile: bytes
) -> None:
    if _backend(request) == "json":
        hostile = hostile.replace(b"\n", b" ")  # one line; a blank one is skipped
        if not hostile.strip():
            hostile = b"\x00"
    store_lines(_backend(request), tmp_path, [GOOD[0], hostile, *GOOD[1:]])

    result = verify_chain(store=store)
    assert (result.ok, result.first_bad_seq, result.events) == (False, 2, 1), result
    assert result.detail
    problem = ChainWatcher().check(store)
    assert problem is not None


# Values an earlier version could store and hash (the slow, standard spelling).
_honest_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(min_value=1e-10, max_value=1e-3),  # spelled apart by orjson
        st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
        st.none(),
        st.booleans(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


def _honest_line(seq: int, prev: str, payload: Any) -> tuple[bytes, str]:
    body = {
        "actor": "op",
        "event": "CONE_SET",
        "payload": payload,
        "prev": prev,
        "seq": seq,
        "ts_utc": "2026-01-01T00:00:00.000000Z",
    }
    digest = chain_hash(prev, body)
    return canonical_bytes({**body, "hash": digest}), digest


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=_honest_values)
@example(payload={"metrics": {"n": int(HUGE)}})  # the reproduced one, before the edge refused it
@example(payload={"u": 2**64 - 1, "s": -(2**63) - 1, "f": [1e-05, 5e-324]})
def test_a_line_written_honestly_by_an_earlier_version_verifies(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path, payload: Any
) -> None:
    first, digest = _honest_line(1, GENESIS, payload)
    second, last = _honest_line(2, digest, {"after": payload})
    store_lines(_backend(request), tmp_path, [first, second])
    result = verify_chain(store=store)
    assert (result.ok, result.events, result.head_hash) == (True, 2, last), result
    assert ChainWatcher().check(store) is None


def test_after_an_old_line_with_a_huge_integer_writes_go_on(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path, clock: FakeClock
) -> None:
    # The stores take back and chain onto what they stored (the JSON store
    # spells its last line again): refusing such integers there would stop
    # every audited write after one.
    line, _ = _honest_line(1, GENESIS, {"metrics": {"n": int(HUGE)}})
    store_lines(_backend(request), tmp_path, [line])
    event = record_event(store=store, event="CONE_SET", payload={}, actor="op", clock=clock)
    assert event.seq == 2
    assert verify_chain(store=store).events == 2


def test_the_reproduced_log_verifies_over_http_health_and_the_cli(
    client: TestClient, data_dir: Path
) -> None:
    """A 400-digit integer in cone metrics, stored by the version before the
    edge refused it: verify answered 500, the CLI crashed, health stayed red."""
    line, _ = _honest_line(1, GENESIS, {"metrics": {"n": int(HUGE)}})
    (data_dir / "audit.log").write_bytes(line + b"\n")
    verify = client.get("/core/audit/verify")
    assert verify.status_code == 200
    assert (verify.json()["ok"], verify.json()["events"]) == (True, 1)
    assert client.get("/core/status/ryg").json()["checks"]["audit"]["status"] == "green"
    cli = CliRunner().invoke(cli_app, ["audit", "verify", "--data-dir", str(data_dir)])
    assert (cli.exit_code, "audit chain OK: 1 chained event verified" in cli.output) == (0, True)
    # Its hash edited: a broken chain, named, not a crash.
    (data_dir / "audit.log").write_bytes(line.replace(b'"hash":"', b'"hash":"0', 1) + b"\n")
    broken = client.get("/core/audit/verify").json()
    assert (broken["ok"], broken["first_bad_seq"]) == (False, 1)
    cli = CliRunner().invoke(cli_app, ["audit", "verify", "--data-dir", str(data_dir)])
    assert cli.exit_code == 1
    assert "BROKEN at seq 1" in cli.output
