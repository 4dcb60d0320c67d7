"""Auth persistence: the API tokens (their SHA-256, never the tokens) and the
sign-in links' one-time codes (their SHA-256 too).

``tokens.json`` (``{"tokens": [...]}``) and ``signin_codes.json``
(``{"codes": [...]}``) in a data dir; generic document rows on SQL, so every
worker and replica sees the same ones. The owner credential itself (the
secret) is a file of the data dir, see :mod:`.owner_file`.
"""

from __future__ import annotations

from typing import Any

from ..storage.errors import StorageCorruptError
from ..storage.parsing import parse_stored
from ..storage.protocol import Document, Reader, Schema, Store, StoreTxn
from .models import SigninCode, TokenRecord

TOKENS = Document("tokens", file="tokens.json", envelope="tokens")
SIGNIN_CODES = Document("signin_codes", file="signin_codes.json", envelope="codes")

SCHEMA = Schema(documents=(TOKENS, SIGNIN_CODES))


def _parse(items: Any) -> list[TokenRecord]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise StorageCorruptError(TOKENS.file, '"tokens" must be a list')
    return [parse_stored(TokenRecord, i, where=TOKENS.file, what="token record") for i in items]


def _parse_codes(items: Any) -> list[SigninCode]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise StorageCorruptError(SIGNIN_CODES.file, '"codes" must be a list')
    return [
        parse_stored(SigninCode, i, where=SIGNIN_CODES.file, what="sign-in code") for i in items
    ]


def load_tokens(*, store: Store) -> list[TokenRecord]:
    # Cached while the stored tokens are unchanged: they are read on every request.
    return store.read_cached(TOKENS, _parse)


def read_tokens(reader: Reader) -> list[TokenRecord]:
    return _parse(reader.read_document(TOKENS))


def write_tokens(txn: StoreTxn, tokens: list[TokenRecord]) -> None:
    txn.write_document(TOKENS, [t.model_dump() for t in tokens])


def load_codes(*, store: Store) -> list[SigninCode]:
    return store.read_cached(SIGNIN_CODES, _parse_codes)


def read_codes(reader: Reader) -> list[SigninCode]:
    return _parse_codes(reader.read_document(SIGNIN_CODES))


def write_codes(txn: StoreTxn, codes: list[SigninCode]) -> None:
    txn.write_document(SIGNIN_CODES, [c.model_dump() for c in codes])
