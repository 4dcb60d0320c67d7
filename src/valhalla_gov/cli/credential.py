"""The owner credential a command sends to a server on this machine when it
is given none (no ``--token``, no ``$VALHALLA_TOKEN``).

The data dir's ``owner.token`` is readable by the account that owns the data
only, so only that account's commands find it. It is sent to a loopback
address only, and only when the process listening on that port runs as the
account that owns the file: another account could have taken the port (a
server of its own, started while ours was down) to collect what clients
send it. An address alone is trusted with nothing, here either.

Only the standard library at module level: ``valhalla --help`` must stay fast.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp
_PROC_TABLES = {socket.AF_INET: "/proc/net/tcp", socket.AF_INET6: "/proc/net/tcp6"}


def data_dir() -> Path:
    """The data dir a command on this machine means: ``$VALHALLA_DATA_DIR`` or ./data."""
    return Path(os.environ.get("VALHALLA_DATA_DIR") or "data")


def is_loopback_url(url: str) -> bool:
    """The URL's host reaches this machine's loopback, however it is spelt:
    ``localhost``, ``127.1``, ``0``, ``[::ffff:127.0.0.1]``, or a name that
    resolves there. Such a request never goes through a proxy from the
    environment, whatever credential it carries."""
    host = urlsplit(url).hostname or ""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(_this_machine(str(info[4][0])) for info in infos)


def _this_machine(text: str) -> bool:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def owner_credential_for(url: str, directory: Path | None = None) -> str | None:
    """The data dir's owner credential, if ``url`` is this machine's server
    run by the account that owns the credential's file; None otherwise."""
    if not is_loopback_url(url):
        return None
    from ..auth.owner_file import read_owner_token_as_client

    found = read_owner_token_as_client(directory or data_dir())
    if found is None:
        return None
    token, uid = found
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    owners = listener_uids(parts.hostname or "", port)
    return token if owners and owners == {uid} else None


def listener_uids(host: str, port: int) -> set[int]:
    """The accounts whose sockets listen where a connection to ``host:port``
    would land (Linux: read from /proc/net/tcp and tcp6); empty when none is
    found or the tables cannot be read."""
    targets: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for _, _, _, _, address in _resolve(host, port):
        targets.add(ipaddress.ip_address(address[0]))
    uids: set[int] = set()
    for family, table in _PROC_TABLES.items():
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8 or fields[3] != _LISTEN:
                continue
            hex_address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) != port:
                continue
            local = _address(family, hex_address)
            if local.is_unspecified or local in targets or _mapped(local) in targets:
                uids.add(int(fields[7]))
    return uids


def _resolve(host: str, port: int) -> list[tuple[int, int, int, str, tuple[str, int]]]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [(f, t, p, c, (str(a[0]), int(a[1]))) for f, t, p, c, a in found]


def _address(family: int, hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    # The kernel prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(socket.inet_ntop(family, words))


def _mapped(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``::ffff:127.0.0.1`` as 127.0.0.1 (a dual-stack listener's v4 address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
