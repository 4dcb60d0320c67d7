"""Validation problems in plain words, for people.

Pydantic's messages speak the validator's language ("String should match
pattern '^[a-z0-9_]+$'", "Value error, ..."). The API's 422 bodies and the
settings check at start-up both say the same problem the same way, through
:func:`plain_message`. Only the standard library is imported: the settings
check runs before anything else in a command.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# Every ``pattern=`` a model or route uses, in words (tests/api/test_plain_422.py
# fails on one missing here, so no regular expression reaches a person).
PATTERN_WORDS: dict[str, str] = {
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$": (
        "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or a "
        "digit (such as phone or ops-chat)"
    ),
    r"^[1-9][0-9]{0,17}:[0-9a-f]{64}$": (
        "must be SEQ:HASH as `valhalla audit head` prints it: the event's number, a "
        "colon and 64 hex digits"
    ),
    r"^[a-z0-9_]+$": "must be lower-case letters, digits and underscores only (such as check_caps)",
    r"^[0-9a-f]{64}$": "must be 64 lower-case hex digits (32 random bytes)",
}

UNKNOWN_PATTERN = "holds characters that are not allowed here"

# Pydantic error types whose message is fixed words, by type.
_FIXED: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is not a field this accepts",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number (not NaN or Infinity)",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "string_unicode": "must be text",
    "list_type": "must be a list",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "datetime_parsing": "must be a time such as 2026-12-08T09:30:00Z",
    "datetime_type": "must be a time such as 2026-12-08T09:30:00Z",
    "datetime_from_date_parsing": "must be a time such as 2026-12-08T09:30:00Z",
    "date_parsing": "must be a date such as 2026-12-08",
    "date_type": "must be a date such as 2026-12-08",
    "path_type": "must be a file path",
    "url_parsing": "must be a URL such as https://example.com/hook",
    "url_scheme": "must be a URL such as https://example.com/hook",
    "url_type": "must be a URL such as https://example.com/hook",
}


def _count(value: Any, one: str) -> str:
    return f"{value} {one}" + ("" if value == 1 else "s")


def _number(value: Any) -> Any:
    """0.0 as 0, 2.5 as 2.5: a bound as a person writes it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _too_short(ctx: Mapping[str, Any]) -> str:
    least = ctx.get("min_length", 1)
    return "must not be empty" if least == 1 else f"must be at least {_count(least, 'character')}"


def _json(ctx: Mapping[str, Any]) -> str:
    reason = str(ctx.get("error", "")).strip()
    return "is not valid JSON" + (f" ({reason[:1].lower()}{reason[1:]})" if reason else "")


# Pydantic error types whose words take the rule's details (``ctx``).
_FROM_CTX: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "string_pattern_mismatch": lambda c: PATTERN_WORDS.get(str(c.get("pattern")), UNKNOWN_PATTERN),
    "string_too_short": _too_short,
    "string_too_long": lambda c: f"must be at most {_count(c.get('max_length'), 'character')}",
    "too_short": lambda c: f"must have at least {_count(c.get('min_length'), 'item')}",
    "too_long": lambda c: f"must have at most {_count(c.get('max_length'), 'item')}",
    "greater_than_equal": lambda c: f"must be at least {_number(c.get('ge'))}",
    "greater_than": lambda c: f"must be more than {_number(c.get('gt'))}",
    "less_than_equal": lambda c: f"must be at most {_number(c.get('le'))}",
    "less_than": lambda c: f"must be less than {_number(c.get('lt'))}",
    "literal_error": lambda c: f"must be {c.get('expected')}",
    "enum": lambda c: f"must be {c.get('expected')}",
    "json_invalid": _json,
}


def plain_message(error: Mapping[str, Any]) -> str:
    """What is wrong with the value, in words ("must be a whole number"),
    from a pydantic error (a ``ValidationError.errors()`` item)."""
    kind = str(error.get("type", ""))
    if kind in _FIXED:
        return _FIXED[kind]
    if kind in _FROM_CTX:
        return _FROM_CTX[kind](error.get("ctx") or {})
    # Our own validators' messages are already words; pydantic only put its
    # prefix before them.
    msg = str(error.get("msg", ""))
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
