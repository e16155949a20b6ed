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

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT = 5.0
# Named for the record: each is also non-global, so the general rule refuses them already.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


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
        raise ValueError(f"'url' is not a valid URL: '{url}'.") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("'url' must be an absolute http or https URL with a host, e.g. https://example.com/hook.")
    if port is not None and not 0 < port < 65536:
        raise ValueError("'url' has an invalid port.")
    return parsed


def is_public_address(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return not (
        not ip.is_global
        or ip.is_multicast
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_reserved
        or ip.is_unspecified
        or ip in METADATA_ADDRESSES
    )


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
    """The addresses to connect to for ``url``; ``DestinationRefused`` if any is not allowed.

    ``OSError``/``TimeoutError`` propagate when the name does not resolve."""
    host = url.host
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise DestinationRefused(f"'{host}' is a loopback name")
    addresses = await resolve(host, default_port(url))
    if not addresses:
        raise OSError(f"'{host}' resolves to no address")
    if not allow_private:
        refused = [str(a) for a in addresses if not is_public_address(a)]
        if refused:
            raise DestinationRefused(f"'{host}' resolves to {', '.join(refused)}, which is not a public address")
    return addresses
