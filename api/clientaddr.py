"""The client's address, for the log-in limits: from the socket, never from a header by default.

`X-Forwarded-For` is honoured only when the peer itself is a trusted proxy, listed in
`DANGJIAN_TRUSTED_PROXIES` (comma-separated addresses or CIDR networks; empty by default).
The client is then the right-most address of the chain that is not a trusted proxy: every
address to its left was written by the client and proves nothing. The server must not let
uvicorn rewrite the peer from the header (`dangjian serve` runs it with proxy_headers=False).

An IPv6 client counts as its /64 (one subscriber usually holds a whole /64); an IPv4-mapped
IPv6 address counts as the IPv4 address.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from functools import lru_cache

from starlette.requests import Request

TRUSTED_PROXIES_ENV = "DANGJIAN_TRUSTED_PROXIES"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

log = logging.getLogger(__name__)


@lru_cache(maxsize=8)
def parse_trusted(setting: str) -> tuple[IPNetwork, ...]:
    """Return the networks of a `DANGJIAN_TRUSTED_PROXIES` value; bad entries are logged, skipped."""
    nets = []
    for item in setting.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            log.warning(
                "%s: 忽略无效的地址 %r / ignoring an invalid entry", TRUSTED_PROXIES_ENV, item
            )
    return tuple(nets)


def trusted_proxies() -> tuple[IPNetwork, ...]:
    """Return the trusted proxy networks from the environment (none by default)."""
    return parse_trusted(os.environ.get(TRUSTED_PROXIES_ENV, ""))


def parse_ip(text: str) -> IPAddress | None:
    """Return the address in `text` ("1.2.3.4", "1.2.3.4:80", "[::1]:80", "::1"), or None."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_trusted(ip: IPAddress, nets: tuple[IPNetwork, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in nets)


def _forwarded_chain(request: Request) -> list[str]:
    values = request.headers.getlist("x-forwarded-for")
    return [hop for value in values for hop in value.split(",")]


def client_key(ip: IPAddress) -> str:
    """Return the text the limits count by: the IPv4 address, or the IPv6 /64."""
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def resolve_client(
    peer: str, forwarded: list[str], nets: tuple[IPNetwork, ...]
) -> IPAddress | None:
    """Return the client's address given the socket peer and the X-Forwarded-For hops."""
    ip = parse_ip(peer)
    if ip is None or not _is_trusted(ip, nets):
        return ip
    for hop in reversed(forwarded):
        hop_ip = parse_ip(hop)
        if hop_ip is None:  # a garbled hop: keep the last trusted proxy's address
            break
        ip = hop_ip
        if not _is_trusted(hop_ip, nets):
            break
    return ip


def client_address(request: Request) -> str:
    """Return the client the log-in limits count this request against."""
    peer = request.client.host if request.client else ""
    ip = resolve_client(peer, _forwarded_chain(request), trusted_proxies())
    if ip is None:
        return (peer or "unknown")[:64]
    return client_key(ip)
