"""The JSON spellings the stores write, fast and exactly as before.

Two spellings matter:

- **canonical**: sorted keys, no spaces, UTF-8, no NaN. A hash chain hashes
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
# integer has 19 or more digits. Digits are mapped to "0" and the run looked
# for with a substring search (a regex costs ten times more); a hex hash may
# hold such a run too, which only costs time.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19

# Types the standard library refuses (datetimes, dataclasses, subclasses such
# as enums) make orjson refuse too, so they reach the slow path and its error.
_STRICT = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_SORTED = orjson.OPT_SORT_KEYS | _STRICT
_INDENTED = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE | _STRICT


def check_storable(value: Any) -> None:
    """Raise UnstorableValueError for nesting past MAX_DEPTH (NaN and Infinity
    are refused by the encoders)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise UnstorableValueError(f"nested deeper than {MAX_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _stdlib(value: Any, **kwargs: Any) -> bytes:
    check_storable(value)
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False, **kwargs).encode("utf-8")
    except (ValueError, TypeError) as exc:
        raise UnstorableValueError(f"not standard JSON: {exc}") from exc


def _fast(value: Any, option: int) -> bytes | None:
    """orjson's bytes when they are exactly the standard library's, else None.

    The checks cost less than one more encoding: every bracket counted is at
    most one level, so few brackets prove the depth; NaN and Infinity come
    out as ``null``, so a value that holds a ``null`` must read back equal
    (NaN equals nothing, a tuple no list: both take the slow path).
    """
    try:
        out = orjson.dumps(value, option=option)
    except orjson.JSONEncodeError:  # past 64 bits, too deep, not JSON at all
        return None
    if out.count(b"{") + out.count(b"[") > MAX_DEPTH:
        return None
    if b"null" in out and orjson.loads(out) != value:
        return None
    if (b"e-" in out or b"0.0000" in out) and _MAY_DIFFER.search(out) is not None:
        return None
    return out


def canonical_bytes(value: Any) -> bytes:
    """The one JSON spelling used for hashing and for stored lines, as UTF-8."""
    out = _fast(value, _SORTED)
    if out is None:
        return _stdlib(value, sort_keys=True, separators=(",", ":"))
    return out


def canonical_json(value: Any) -> str:
    """:func:`canonical_bytes` as text."""
    return canonical_bytes(value).decode("utf-8")


def document_bytes(value: Any) -> bytes:
    """A document as it is stored: indented two spaces, newline at the end."""
    out = _fast(value, _INDENTED)
    if out is None:
        return _stdlib(value, indent=2) + b"\n"
    return out


def loads(raw: bytes | str) -> Any:
    """Parse JSON as the standard library would: it also takes what orjson
    refuses (NaN literals in hand-edited files, lone surrogates) and keeps
    integers past 64 bits exact.

    Whatever it cannot read raises ``json.JSONDecodeError``, which every
    store turns into StorageCorruptError naming the file or row: also bytes
    that are not UTF-8, nesting past the standard library's recursion limit
    and integers past its limit on digits (which raise other errors there)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _LONG_RUN not in data.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise json.JSONDecodeError(f"{type(exc).__name__}: {exc}", "", 0) from exc
