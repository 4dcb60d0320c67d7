"""What a webhook URL may be, and how one is shown.

A URL is checked by our rules and then by the parser of the HTTP client that
will send to it (httpx): one that passes here is one the client can send to.
The same check runs when a webhook is added (a 422) and before each send (a
URL edited by hand into ``webhooks.json`` is that webhook's failed attempt).
"""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

MAX_URL = 2048
# Spaces, controls and invisible characters (bidi overrides, zero-width
# ones): a URL holding one can show as something else than where it leads.
_HIDDEN = {"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp", "Zs"}


class UnusableUrlError(ValueError):
    """Why a URL cannot be a webhook's, in words for the person who gave it."""


def check_url(url: str) -> str:
    """The URL, stripped, when we may send to it; else :class:`UnusableUrlError`."""
    text = url.strip()
    if not text:
        raise UnusableUrlError("the URL is empty")
    if len(text) > MAX_URL:
        raise UnusableUrlError(f"the URL is longer than {MAX_URL} characters")
    for char in text:
        if unicodedata.category(char) in _HIDDEN:
            raise UnusableUrlError(
                f"the URL contains a space or an invisible character (U+{ord(char):04X}); "
                "remove it, or write a space in the path as %20"
            )
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed [ in the host
        raise UnusableUrlError("the URL cannot be read as an http:// or https:// address") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UnusableUrlError("the URL must start with http:// or https://")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise UnusableUrlError("the URL's port must be a number from 1 to 65535")
    if not parts.hostname:
        raise UnusableUrlError(
            "the URL has no host name; write it as https://host/path, e.g. "
            "https://hooks.example.com/valhalla"
        )
    _client_parses(text)
    return text


def _client_parses(text: str) -> None:
    import httpx2 as httpx  # the client's own parser; imported only when a URL is checked

    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise UnusableUrlError(_in_words(str(exc))) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UnusableUrlError("the URL cannot be read as an http:// or https:// address")


def _in_words(reason: str) -> str:
    if reason.startswith("Invalid port"):
        return "the URL's port must be a number from 1 to 65535"
    if reason.startswith("Invalid IPv6"):
        return "the URL's host in [brackets] is not a valid IPv6 address"
    if reason.startswith(("Invalid IDNA", "Invalid IPv4")):
        return (
            "the URL's host name is not a valid domain name or IP address "
            "(check for empty parts such as two dots in a row)"
        )
    if "too long" in reason:
        return "a part of the URL is too long"
    return "the URL cannot be read as an http:// or https:// address"


def redact_url(url: str) -> str:
    """Scheme, host and port only: chat webhook URLs carry their credential
    in the path, so the audit log and the logs never show more."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unusable url>"
    # A hand-edited URL may hold what a log should not print as is.
    host = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in parts.hostname or "")
    if ":" in host:
        host = f"[{host}]"
    more = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{more}"
