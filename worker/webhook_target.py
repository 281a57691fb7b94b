"""Where a webhook may be sent: its host resolved at send time, private networks refused unless allowed.

An admin's webhook URL is still a request the server makes on someone's behalf (SSRF): pointed at
`169.254.169.254` it reads a cloud's instance credentials, at `127.0.0.1:6379` it talks to the
broker. So every address the host resolves to is checked when a delivery is sent (not when the
webhook was added: DNS can change in between), and a loopback, link-local, private, shared,
multicast, reserved or unspecified one is refused unless REGCTL_WEBHOOK_ALLOW_PRIVATE names the
host, the address or a network holding it. The request then goes to the address that was checked,
so the name cannot resolve elsewhere a moment later (DNS rebinding); TLS still verifies the name.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The webhook's host is, or resolves to, an address a delivery may not reach."""


@dataclass(frozen=True)
class Target:
    """A checked receiver: the URL to connect to (its address), and the name TLS and the Host header use."""

    url: str
    host: str  # the name, for TLS's server name and certificate check
    authority: str  # the name and any port as the URL gave them: the Host header


def checked_target(url: str, allowed: tuple[str, ...]) -> Target:
    """Resolve `url`'s host and check every address (module docstring); TargetRefused says why not."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise TargetRefused(f"{url!r} names no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except OSError as exc:
        raise TargetRefused(f"{host} does not resolve ({exc.strerror or exc})") from None
    addresses = sorted((ipaddress.ip_address(a.split("%")[0]) for a in found), key=str)
    for address in addresses:
        kind = private_kind(address)
        if kind is not None and not _allowed(host, address, allowed):
            raise TargetRefused(
                f"{host} resolves to {address}, a {kind} address; list it in REGCTL_WEBHOOK_ALLOW_PRIVATE "
                "to allow it"
            )
    pinned = f"[{addresses[0]}]" if addresses[0].version == 6 else str(addresses[0])
    netloc = f"{pinned}:{parts.port}" if parts.port else pinned
    authority = parts.netloc.rpartition("@")[2]
    return Target(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), host, authority)


def private_kind(address: Address) -> str | None:
    """What makes `address` one a webhook may not reach by default, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("shared", address in ipaddress.ip_network("100.64.0.0/10")),
    ):
        if flag:
            return kind
    return None


def _allowed(host: str, address: Address, allowed: tuple[str, ...]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1, listed as such
    for entry in allowed:
        if entry == host:
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name, matched above
    return False
