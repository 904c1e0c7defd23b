"""The client's address, for IP allow-lists and the audit log.

The client is the TCP peer, unless the peer is one of the operator's trusted proxies
(``auth.trusted_proxies``). Then ``X-Forwarded-For`` is walked from the right, skipping
trusted hops: the first untrusted address is the client. Each proxy appends the address it
saw, so only the entries right of the first untrusted one were written by machines we trust;
anything further left is whatever the client chose to send.

Strict on purpose: a malformed ``X-Forwarded-For`` (an entry that is not a bare address)
counts as absent and the peer is the client; ``Forwarded``, ``X-Real-IP`` and ``Host`` are
never read. With no trusted proxies configured, no header is read at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Protocol

from sluicegate.settings_auth import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
FORWARDED_FOR = "x-forwarded-for"
_MAX_HOPS = 32  # a longer chain is not a real proxy chain


class HasPeer(Protocol):
    client: tuple[str, int] | None

    def header(self, name: str) -> str | None: ...


def parse_address(text: str) -> Address | None:
    """A bare IPv4 or IPv6 address (IPv4-mapped IPv6 as IPv4); anything else -> None."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def is_trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def _forwarded_client(header: str, trusted: Sequence[Network]) -> Address | None:
    """The first untrusted hop of ``header`` from the right (the leftmost one when all are
    trusted); None when the header is malformed."""
    entries = header.split(",")
    if len(entries) > _MAX_HOPS:
        return None
    hops = [parse_address(entry.strip()) for entry in entries]
    if any(hop is None for hop in hops):
        return None
    client: Address | None = None
    for hop in reversed(hops):
        assert hop is not None
        client = hop
        if not is_trusted(hop, trusted):
            break
    return client


def client_ip(request: HasPeer, trusted: Sequence[Network]) -> Address | None:
    """The client's address (see the module docstring); None when the peer is unknown (a
    Unix socket) or not an IP address."""
    peer = parse_address(request.client[0]) if request.client else None
    if peer is None or not trusted or not is_trusted(peer, trusted):
        return peer
    header = request.header(FORWARDED_FOR)
    if not header:
        return peer
    return _forwarded_client(header, trusted) or peer


def client_address(request: HasPeer, trusted: Sequence[Network]) -> str | None:
    """:func:`client_ip` as text (``"10.1.2.3"``, ``"2001:db8::5"``), e.g. for the audit log."""
    address = client_ip(request, trusted)
    return None if address is None else str(address)
