"""Input rules shared by every request schema."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import StringConstraints

MAX_TEXT = 10_000  # characters in a reason or a note
# Free-form JSON (cone metrics): nesting depth and keys in all, besides MAX_TEXT.
MAX_FREE_FORM_DEPTH = 8
MAX_FREE_FORM_KEYS = 500


def ensure_utf8(value: Any) -> Any:
    """Refuse strings that cannot be stored as UTF-8 (lone surrogates such as
    "\\ud800", which JSON allows as escapes), anywhere inside ``value``."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text contains an unpaired surrogate and cannot be stored") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            ensure_utf8(key)
            ensure_utf8(item)
    elif isinstance(value, list):
        for item in value:
            ensure_utf8(item)
    return value


def bounded_json(value: Any) -> Any:
    """Refuse free-form JSON that is not plain and small in shape: NaN or
    Infinity, nesting past MAX_FREE_FORM_DEPTH, more than MAX_FREE_FORM_KEYS
    keys in all. (The storage layer refuses the worst again, as a last line.)"""
    keys = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and Infinity are not JSON numbers")
        if isinstance(item, dict | list):
            if depth > MAX_FREE_FORM_DEPTH:
                raise ValueError(f"nested deeper than {MAX_FREE_FORM_DEPTH} levels")
            if isinstance(item, dict):
                keys += len(item)
                if keys > MAX_FREE_FORM_KEYS:
                    raise ValueError(f"more than {MAX_FREE_FORM_KEYS} keys in all")
            stack.extend(
                (child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)
            )
    return value


# A note or reason: at most MAX_TEXT characters (pydantic already refuses
# lone surrogates in plain string fields; ensure_utf8 is for free-form JSON).
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
