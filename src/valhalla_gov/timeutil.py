"""UTC clock, ISO-8601 ``Z`` timestamps and sortable unique ids."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator

Clock = Callable[[], datetime]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_z(moment: datetime) -> str:
    """``2026-01-01T09:34:05.283144Z``: always UTC, always microseconds."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not accepted; pass an aware UTC time")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 time; a value without a zone is taken as UTC. One
    that leaves the calendar once converted (0001-01-01T00:00:00+23:59) is a
    ValueError like any unreadable time, not an OverflowError."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None


OUT_OF_RANGE = "the time is out of range once converted to UTC"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(moment: datetime, entropy: bytes | None = None) -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, 26 characters.

    Lexical order follows creation time, so ids sort like the history.
    """
    millis = int(moment.timestamp() * 1000)
    rand = int.from_bytes(entropy if entropy is not None else os.urandom(10), "big")
    return _encode(millis, 10) + _encode(rand & ((1 << 80) - 1), 16)


def stable_id(moment: datetime, seed: str) -> str:
    """A ULID whose random part is derived from ``seed``: the same every time.

    Used for records written before ids existed, so they get one id that does
    not change between reads.
    """
    return new_id(moment, hashlib.sha256(seed.encode("utf-8")).digest()[:10])


def as_utc(value: datetime | None) -> datetime | None:
    """Query-string times: aware ones converted to UTC, naive ones taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _to_utc(value: datetime) -> datetime:
    try:
        converted = as_utc(value)
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None
    assert converted is not None
    return converted


# A query-string time, converted to UTC; one that leaves the calendar in the
# conversion (9999-12-31T23:59:59-23:59) is a 422, not an OverflowError.
UtcDateTime = Annotated[datetime, AfterValidator(_to_utc)]
