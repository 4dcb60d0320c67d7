"""The webhook master key, and the per-webhook signing secrets derived from it.

No secret is stored anywhere: a webhook keeps a random salt, and its secret
is HMAC-SHA256(master key, id + salt). So the store (and ``webhook list``,
the audit log, ``valhalla data export``) holds nothing a receiver could be
impersonated with; the master key lives outside it, in
``VALHALLA_WEBHOOK_KEY`` or a 0600 key file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ServiceUnavailableError
from ..storage.errors import StorageUnavailableError
from ..storage.json_store import create_exclusive
from .models import WebhookRecord

if TYPE_CHECKING:  # the CLI lists webhooks without loading pydantic-settings
    from ..settings import Settings

log = logging.getLogger(__name__)

KEY_FILE = "webhook.key"


@dataclass(frozen=True)
class SigningKey:
    """The master key; its repr shows where it came from, never the key."""

    material: bytes = field(repr=False)
    source: str

    @property
    def key_id(self) -> str:
        return hmac.new(self.material, b"valhalla-webhook-key-id", hashlib.sha256).hexdigest()[:16]

    def secret(self, webhook_id: str, salt: str) -> str:
        message = f"valhalla-webhook-secret\0{webhook_id}\0{salt}".encode()
        digest = hmac.new(self.material, message, hashlib.sha256).digest()
        return "whsec_" + base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def secret_for(hook: WebhookRecord, key: SigningKey | None) -> str:
    """The hook's secret, or ServiceUnavailableError when this process's key
    is not the one it was created with: a replica with another key must not
    send events receivers would reject (or worse, accept from the wrong key)."""
    if key is None or key.key_id != hook.key_id:
        have = "no webhook key" if key is None else f"key {key.key_id}"
        raise ServiceUnavailableError(
            f"webhook {hook.name!r} was created with master key {hook.key_id} but this "
            f"process has {have}: give every process the same VALHALLA_WEBHOOK_KEY "
            "(or key file), or remove and re-add the webhook"
        )
    return key.secret(hook.id, hook.salt)


def load_key(settings: Settings, *, create: bool) -> SigningKey | None:
    """The configured key; else the key file, made (0600) when ``create``.

    None when there is no key and ``create`` is false: nothing was ever
    signed with one, so there is no webhook to send either.
    """
    if settings.webhook_key is not None:
        configured = settings.webhook_key.get_secret_value().strip().encode("utf-8")
        return SigningKey(configured, "VALHALLA_WEBHOOK_KEY")
    path = settings.webhook_key_file or settings.data_dir / KEY_FILE
    material = _read(path)
    if material is None and create:
        if settings.database_url and settings.webhook_key_file is None:
            # Replicas share the database but not a data dir: a key made here
            # would sign for this host only.
            raise ServiceUnavailableError(
                "with a database, webhooks need a master key every replica shares: set "
                "VALHALLA_WEBHOOK_KEY (64 hex digits, e.g. from `openssl rand -hex 32`) or "
                "VALHALLA_WEBHOOK_KEY_FILE, the same for the server and the CLI"
            )
        material = _create(path)
    return None if material is None else SigningKey(material, str(path))


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            raw = fh.read().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageUnavailableError(path, f"cannot read the webhook key: {exc.strerror}") from exc
    if len(raw) < 32:
        raise StorageUnavailableError(
            path, "the webhook key file holds fewer than 32 characters; left untouched"
        )
    if mode & 0o077:
        log.warning("%s: the webhook key file is readable by other users; chmod 600 it", path)
    return raw


def _create(path: Path) -> bytes:
    """A new random key file, there whole or not at all (see
    :func:`json_store.create_exclusive`); when two processes race, the loser
    reads the winner's key."""
    material = secrets.token_hex(32).encode("ascii")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageUnavailableError(
            path, f"cannot create the webhook key: {exc.strerror or exc}"
        ) from exc
    if not create_exclusive(path, material + b"\n"):
        existing = _read(path)
        if existing is None:
            raise StorageUnavailableError(path, "appeared and vanished while being created")
        return existing
    log.info("created the webhook master key at %s", path)
    return material
