"""The fast encoders write exactly what the standard library writes.

The audit chain hashes the canonical spelling, so any byte of difference
would make logs from earlier versions fail to verify. These are property
tests over arbitrary JSON values, with the known points where orjson and the
standard library disagree pinned as explicit examples.
"""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import sized
from valhalla_gov.storage import encoding
from valhalla_gov.storage.errors import UnstorableValueError


def _reference_canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _reference_document(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


# Every code point but lone surrogates (they cannot be stored as UTF-8 at all).
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    # The band where orjson's float spelling differs from the standard library's.
    st.floats(min_value=1e-10, max_value=1e-3).flatmap(lambda f: st.sampled_from([f, -f])),
)
_scalars = st.one_of(st.none(), st.booleans(), _numbers, _text)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_text, inner, max_size=5)),
    max_leaves=30,
)

_DIFFERING = [1e-7, 1e-05, 5.783e-05, -2.86e-07, 9.99e-06, 1e-9, 2**64, 2**100, -(2**65)]


@settings(max_examples=sized(300, 3000), deadline=None)
@given(_values)
@example({"x": [1e-7, 1e-05, 0.0001, 1e16, 1e-10]})
@example({"b": 1, "a": {"é": "\u2028\x7f\x1f\n", "z": 2**64}})
@example({"\U0001f600": 1, "\uffff": 2, "a": 3})
def test_canonical_bytes_match_the_standard_library(value: Any) -> None:
    assert encoding.canonical_bytes(value) == _reference_canonical(value)
    assert encoding.canonical_json(value) == _reference_canonical(value).decode()


@settings(max_examples=sized(150, 1500), deadline=None)
@given(_values)
@example({"x": [1e-7, 1e-05], "empty": {}, "none": []})
def test_documents_match_the_standard_library(value: Any) -> None:
    assert encoding.document_bytes(value) == _reference_document(value)


@settings(max_examples=sized(150, 1500), deadline=None)
@given(_values)
def test_loads_reads_what_the_standard_library_reads(value: Any) -> None:
    raw = _reference_canonical(value)
    assert encoding.loads(raw) == json.loads(raw)


@pytest.mark.parametrize("value", _DIFFERING)
def test_known_differences_take_the_standard_spelling(value: float | int) -> None:
    assert encoding.canonical_bytes({"v": value}) == _reference_canonical({"v": value})
    assert encoding.document_bytes([value]) == _reference_document([value])


def test_random_bit_patterns_of_floats_agree() -> None:
    # Hypothesis favours "interesting" floats; this sweeps raw bit patterns.
    rng = random.Random(1301)
    for _ in range(50_000):
        (f,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if math.isfinite(f):
            assert encoding.canonical_bytes([f]) == _reference_canonical([f]), f


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, -math.inf, [1, [math.nan]], {"a": math.inf}, {"a": None, "b": math.nan}],
)
def test_nan_and_infinity_are_refused_not_written_as_null(bad: Any) -> None:
    with pytest.raises(UnstorableValueError, match="not standard JSON"):
        encoding.canonical_bytes(bad)
    with pytest.raises(UnstorableValueError, match="not standard JSON"):
        encoding.document_bytes(bad)


def test_loads_takes_what_orjson_refuses() -> None:
    assert encoding.loads(b'{"big": 123456789012345678901234567890}') == {
        "big": 123456789012345678901234567890
    }
    assert encoding.loads(b'"\\ud800"') == "\ud800"
    assert encoding.loads(b'{"a": 1, "a": 2}') == {"a": 2}
    with pytest.raises(json.JSONDecodeError):
        encoding.loads(b"{not json")


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,  # past the standard library's recursion limit
        b'{"n": ' + b"7" * 5000 + b"}",  # past its limit on an integer's digits
        '{"n": ' + "7" * 5000 + "}",
        b'{"t": "\xff\xfe"}',  # not UTF-8
    ],
    ids=["deep", "long-int", "long-int-text", "not-utf8"],
)
def test_loads_raises_only_decode_errors(raw: bytes | str) -> None:
    # What every store turns into a StorageCorruptError naming the file or row.
    with pytest.raises(json.JSONDecodeError):
        encoding.loads(raw)


def test_what_could_not_be_read_back_is_not_stored() -> None:
    # Integers of any size are stored exactly and read back exactly, up to
    # the standard library's limit on digits; past it, a write is refused.
    assert encoding.loads(encoding.canonical_bytes({"n": 10**4000})) == {"n": 10**4000}
    with pytest.raises(UnstorableValueError):
        encoding.canonical_bytes({"n": 10**5000})
    with pytest.raises(UnstorableValueError):
        encoding.document_bytes({"n": 10**5000})


def test_depth_past_the_limit_is_refused_however_it_is_encoded() -> None:
    deep: Any = []
    for _ in range(encoding.MAX_DEPTH):
        deep = [deep]
    with pytest.raises(UnstorableValueError, match="nested deeper"):
        encoding.canonical_bytes(deep)
    with pytest.raises(UnstorableValueError, match="nested deeper"):
        encoding.document_bytes({"a": deep})
    # Many brackets but shallow: the slow path, the same bytes.
    wide: dict[str, Any] = {"k": [[] for _ in range(200)], "n": None}
    assert encoding.canonical_bytes(wide) == _reference_canonical(wide)


def test_what_the_standard_library_refuses_stays_refused() -> None:
    import datetime

    with pytest.raises(UnstorableValueError):
        encoding.canonical_bytes({"at": datetime.datetime(2026, 1, 1)})
    # Integer keys orjson refuses; the standard library writes them as strings.
    assert encoding.document_bytes({1: "a", "x": {2: 3}}) == _reference_document(
        {1: "a", "x": {2: 3}}
    )
    assert encoding.canonical_bytes({"t": (1, None)}) == b'{"t":[1,null]}'
