"""Input rules shared by every request schema."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import StringConstraints

MAX_TEXT = 10_000  # characters in a reason or a note


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


# A note or reason: at most MAX_TEXT characters (pydantic already refuses
# lone surrogates in plain string fields; ensure_utf8 is for free-form JSON).
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
