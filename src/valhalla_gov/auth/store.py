"""Auth persistence: the API tokens (their SHA-256, never the tokens).

``tokens.json`` (``{"tokens": [...]}``) in a data dir; a generic document row
on SQL.
"""

from __future__ import annotations

from typing import Any

from ..storage.errors import StorageCorruptError
from ..storage.parsing import parse_stored
from ..storage.protocol import Document, Reader, Schema, Store, StoreTxn
from .models import TokenRecord

TOKENS = Document("tokens", file="tokens.json", envelope="tokens")

SCHEMA = Schema(documents=(TOKENS,))


def _parse(items: Any) -> list[TokenRecord]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise StorageCorruptError(TOKENS.file, '"tokens" must be a list')
    return [parse_stored(TokenRecord, i, where=TOKENS.file, what="token record") for i in items]


def load_tokens(*, store: Store) -> list[TokenRecord]:
    # Cached while the stored tokens are unchanged: they are read on every request.
    return store.read_cached(TOKENS, _parse)


def read_tokens(reader: Reader) -> list[TokenRecord]:
    return _parse(reader.read_document(TOKENS))


def write_tokens(txn: StoreTxn, tokens: list[TokenRecord]) -> None:
    txn.write_document(TOKENS, [t.model_dump() for t in tokens])
