"""Where webhooks may point: URL syntax, and the SSRF policy on resolved addresses.

By default a webhook may only reach public (globally routable, unicast) addresses: loopback,
private, link-local (cloud metadata 169.254.169.254), shared/CGNAT, multicast, reserved and
unspecified addresses are refused, when the webhook is created and again at every delivery after
DNS resolution. Deliveries connect to the address that was checked (no second lookup), so a name
that re-resolves to a private address (DNS rebinding) cannot slip through.
``[webhooks] allow_private_urls = true`` lifts the policy (local development, tests).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx

from core.errors import echo

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT = 5.0
# Named for the record: each is also non-global, so the general rule refuses them already.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
# Names of cloud instance-metadata services (each also resolves to a non-public address there).
METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal", "metadata.azure.com"}
)


class DestinationRefused(Exception):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


def parse_webhook_url(url: str) -> httpx.URL:
    """An absolute http(s) URL with a host; ``ValueError`` with a human reason otherwise."""
    if not url or len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url):
        raise ValueError(f"'url' must be an absolute http or https URL of at most {MAX_URL_LENGTH} characters.")
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError, TypeError):
        raise ValueError(f"'url' is not a valid URL: '{echo(url)}'.") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("'url' must be an absolute http or https URL with a host, e.g. https://example.com/hook.")
    if port is not None and not 0 < port < 65536:
        raise ValueError("'url' has an invalid port.")
    return parsed


def embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address carries and that a network could route it to:
    IPv4-mapped (``::ffff:a.b.c.d``), IPv4-translated (``::ffff:0:a.b.c.d``), IPv4-compatible
    (``::a.b.c.d``), NAT64 (``64:ff9b::/96``, ``64:ff9b:1::/48``), 6to4 (``2002::/16``) and
    Teredo (``2001::/32``: server and client)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip in _TRANSLATED or ip in _NAT64 or ip in _NAT64_LOCAL or (ip in _COMPATIBLE and int(ip) > 1):
        found.append(low32)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def is_public_address(ip: IPAddress) -> bool:
    """A globally routable unicast address, and so is every IPv4 address it embeds."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return False
    checks: list[IPAddress] = [ip, *embedded_ipv4(ip)]
    return all(
        a.is_global
        and not (a.is_multicast or a.is_loopback or a.is_link_local or a.is_private or a.is_reserved)
        and not a.is_unspecified
        and a not in METADATA_ADDRESSES
        for a in checks
    )


def normalise_host(host: str) -> str:
    """The name as the resolver will use it: lower case, no trailing dot(s) (``localhost.`` is
    ``localhost``), IPv6 brackets removed."""
    return host.strip("[]").rstrip(".").lower()


def refused_name(host: str) -> str | None:
    """Why a (normalised) name is refused whatever it resolves to, or None."""
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return f"'{echo(host)}' is a loopback name"
    if host in METADATA_NAMES or host.endswith(".internal"):
        return f"'{echo(host)}' is a cloud metadata or internal name"
    return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=RESOLVE_TIMEOUT)
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]), None)
    return list(seen)


def default_port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


async def check_destination(url: httpx.URL, allow_private: bool) -> list[IPAddress]:
    """The addresses to connect to for ``url`` (connect to one of these, never look the name up
    again: a second lookup could answer differently — DNS rebinding); ``DestinationRefused`` if
    the name or any address it resolves to is not allowed.

    ``OSError``/``TimeoutError`` propagate when the name does not resolve."""
    host = normalise_host(url.host)
    if not allow_private and (reason := refused_name(host)):
        raise DestinationRefused(reason)
    addresses = await resolve(host, default_port(url))
    if not addresses:
        raise OSError(f"'{echo(host)}' resolves to no address")
    if not allow_private:
        refused = [str(a) for a in addresses if not is_public_address(a)]
        if refused:
            raise DestinationRefused(
                f"'{echo(host)}' resolves to {', '.join(refused[:4])}, which is not a public address"
            )
    return addresses
