"""The JSON spellings the stores write, fast and exactly as before.

Two spellings matter:

- **canonical**: sorted keys, no spaces, UTF-8, no NaN. The audit chain hashes
  it and log lines are stored in it, so it must stay byte for byte what the
  standard library writes (``json.dumps(sort_keys=True, separators=(",", ":"),
  ensure_ascii=False)``): logs written by any earlier version must still verify.
- **document**: two-space indent, insertion order, trailing newline.

orjson writes both about ten times faster. It agrees with the standard library
byte for byte except on floats between 1e-9 and 1e-4 (it writes ``1e-7`` or
``0.00001`` where the standard library writes ``1e-07`` and ``1e-05``), on
integers past 64 bits and on values it cannot encode. Those cases are
recognised from its output or its error and written by the standard library
instead; ``tests/storage/test_encoding.py`` proves the agreement by property.
NaN and Infinity, which orjson would silently write as ``null``, are refused
before either encoder runs.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from .errors import UnstorableValueError

# Deeper values are refused at the storage layer whatever the caller checked:
# every stored value must read back and serialise again (pydantic and the
# json module both have recursion limits), or one write would break reads.
MAX_DEPTH = 64

# Where orjson's float spelling may differ from the standard library's: a
# one-digit negative exponent, or a plain decimal below 1e-4. A string that
# happens to contain either only sends that value down the slow path.
_MAY_DIFFER = re.compile(rb"e-\d(?!\d)|0\.0000\d")

# orjson reads an integer past 64 bits as a float, silently; every such
# integer has 19 or more digits, so text holding a run that long is read by
# the standard library (a hex hash may hold one too: that only costs time).
_LONG_DIGITS = re.compile(rb"\d{19}")

_SORTED = orjson.OPT_SORT_KEYS
_INDENTED = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE


def check_storable(value: Any) -> None:
    """Raise UnstorableValueError for nesting past MAX_DEPTH, NaN or Infinity."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UnstorableValueError(f"nested deeper than {MAX_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
            elif isinstance(child, float) and not math.isfinite(child):
                # NaN and Infinity are not JSON; other readers choke on them.
                raise UnstorableValueError(f"not standard JSON: {child!r} is not a JSON number")


def _checked(value: Any) -> None:
    if isinstance(value, dict | list):
        check_storable(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise UnstorableValueError(f"not standard JSON: {value!r} is not a JSON number")


def _stdlib(value: Any, **kwargs: Any) -> bytes:
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False, **kwargs).encode("utf-8")
    except (ValueError, TypeError) as exc:
        raise UnstorableValueError(f"not standard JSON: {exc}") from exc


def canonical_bytes(value: Any) -> bytes:
    """The one JSON spelling used for hashing and for stored lines, as UTF-8."""
    _checked(value)
    try:
        out = orjson.dumps(value, option=_SORTED)
    except orjson.JSONEncodeError:
        return _stdlib(value, sort_keys=True, separators=(",", ":"))
    if _MAY_DIFFER.search(out) is None:
        return out
    return _stdlib(value, sort_keys=True, separators=(",", ":"))


def canonical_json(value: Any) -> str:
    """:func:`canonical_bytes` as text."""
    return canonical_bytes(value).decode("utf-8")


def document_bytes(value: Any) -> bytes:
    """A document as it is stored: indented two spaces, newline at the end."""
    _checked(value)
    try:
        out = orjson.dumps(value, option=_INDENTED)
    except orjson.JSONEncodeError:
        return _stdlib(value, indent=2) + b"\n"
    if _MAY_DIFFER.search(out) is None:
        return out
    return _stdlib(value, indent=2) + b"\n"


def loads(raw: bytes | str) -> Any:
    """Parse JSON as the standard library would: it also takes what orjson
    refuses (NaN literals in hand-edited files, lone surrogates) and keeps
    integers past 64 bits exact."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _LONG_DIGITS.search(data) is not None:
        return json.loads(raw)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(raw)
