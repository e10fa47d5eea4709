"""The one way out: HTTP requests to addresses people typed in (robots, webhooks) and their check.

A URL an organiser saves is fetched by this server, so by default nothing is sent to this
machine, its network or the cloud's metadata service: loopback, private (10/8, 172.16/12,
192.168/16, 100.64/10, fc00::/7), link-local (169.254/16, fe80::/10), multicast, unspecified and
reserved addresses are refused, also when written inside IPv6 (::ffff:a.b.c.d, 6to4, NAT64,
IPv4-compatible). The check runs after DNS resolution, inside the connection: `GuardedBackend`
resolves the host once, checks every address it got and connects to those very addresses, so a
name that answers differently the second time (DNS rebinding) gains nothing. Redirects are never
followed and proxies from the environment are ignored (a proxy would resolve the name itself).

Any port is allowed once the address is public: a public host's database port is not ours to
protect. Private deployments list what may be reached in `DANGJIAN_OUTBOUND_ALLOW`
(comma-separated CIDRs, addresses or host names; read at every connection), e.g.
`DANGJIAN_OUTBOUND_ALLOW=10.8.0.0/16,wecom-proxy.corp`. A listed host name may resolve to
anything. The operator's own settings (SMTP host, Prefect API) do not come through here.

`url_refusal` is the save-time check: the same policy on a URL, with a literal address checked
as written and a host name resolved now; a name that does not resolve yet is accepted, since the
connection is checked again anyway.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import socket
import ssl
import time
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpcore
import httpx

__all__ = [
    "ALLOW_ENV",
    "AllowList",
    "GuardedBackend",
    "OutboundRefused",
    "address_refusal",
    "allow_list",
    "client",
    "host_refusal",
    "url_refusal",
    "vet",
]

log = logging.getLogger(__name__)

ALLOW_ENV = "DANGJIAN_OUTBOUND_ALLOW"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK = "回环地址"
PRIVATE = "内网地址"
LINK_LOCAL = "链路本地地址"
MULTICAST = "组播地址"
UNSPECIFIED = "未指定地址"
RESERVED = "保留地址"

PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

# socket.getaddrinfo, looked up at call time (the test suite wraps it so that no public name is
# ever resolved from a test).
getaddrinfo = socket.getaddrinfo


class OutboundRefused(httpx.ConnectError):
    """The policy refuses the address; `reason` is a short Chinese phrase such as "内网地址"."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"地址被拒绝：{reason}")
        self.reason = reason


@dataclass(frozen=True)
class AllowList:
    """Networks and host names the operator allows beyond the public internet."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """Read "10.0.0.0/8, 127.0.0.1, proxy.corp"; an unusable entry is logged and skipped."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in (e.strip() for e in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if _is_host_name(entry):
                    hosts.add(normalise_host(entry))
                else:
                    log.warning(
                        "%s: ignoring %r (not a CIDR, address or host name)", ALLOW_ENV, entry
                    )
        return cls(tuple(networks), frozenset(hosts))

    def allows_address(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self.networks)


def _is_host_name(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return all(0 < len(x) <= 63 and x.replace("-", "").isalnum() for x in labels)


def allow_list(env: Mapping[str, str] | None = None) -> AllowList:
    """The allow-list in `DANGJIAN_OUTBOUND_ALLOW` now (empty: only public addresses)."""
    env = os.environ if env is None else env
    return _parse_cached(env.get(ALLOW_ENV, ""))


@functools.lru_cache(maxsize=8)
def _parse_cached(text: str) -> AllowList:
    return AllowList.parse(text)


def normalise_host(host: str) -> str:
    """Lower case, without the trailing dot and IPv6 brackets."""
    return host.strip().strip("[]").rstrip(".").lower()


# ---------------------------------------------------------------------------------------------
# The policy


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, 6to4, NAT64, IPv4-compatible), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64 or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _category(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return _category(embedded)
        if ip.is_site_local:
            return RESERVED
    if ip.is_loopback:
        return LOOPBACK
    if ip.is_unspecified:
        return UNSPECIFIED
    if ip.is_link_local:
        return LINK_LOCAL
    if ip.is_multicast:
        return MULTICAST
    if any(ip in net for net in PRIVATE_NETWORKS):
        return PRIVATE
    if not ip.is_global or ip.is_reserved:
        return RESERVED
    return None


def address_refusal(ip: IPAddress | str, allow: AllowList | None = None) -> str | None:
    """Why the policy refuses connecting to `ip` (e.g. "回环地址"), or None if it may."""
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if allow is not None and allow.allows_address(address):
        return None
    return _category(address)


def host_refusal(host: str) -> str | None:
    """Refuse names that mean this machine whatever DNS says (RFC 6761: localhost, *.localhost)."""
    name = normalise_host(host)
    if name == "localhost" or name.endswith(".localhost"):
        return LOOPBACK
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (raises socket.gaierror when it does not resolve)."""
    infos = getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


def vet(host: str, port: int, allow: AllowList | None = None) -> list[IPAddress]:
    """The addresses to connect to for `host`; raises OutboundRefused if any one is refused."""
    allow = allow_list() if allow is None else allow
    name = normalise_host(host)
    if name in allow.hosts:
        return resolve(name, port)
    refused = host_refusal(name)
    if refused:
        raise OutboundRefused(refused)
    addresses = resolve(name, port)
    for address in addresses:
        refused = address_refusal(address, allow)
        if refused:
            raise OutboundRefused(refused)
    return addresses


def url_refusal(url: str, allow: AllowList | None = None) -> str | None:
    """Why `url` may not be saved as a robot or webhook address (Chinese), or None."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, ValueError, TypeError):
        return "地址格式无效"
    if parsed.scheme not in ("http", "https"):
        return "只支持 http:// 或 https:// 地址"
    if parsed.userinfo or "@" in parsed.netloc.decode("ascii", errors="replace"):
        return "地址中不能含用户名或密码（@）"
    if not parsed.host:
        return "地址缺少主机名"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        vet(parsed.host, port, allow)
    except OutboundRefused as exc:
        return exc.reason
    except (OSError, UnicodeError, ValueError):
        return None  # does not resolve now: the connection is checked when it is made
    return None


# ---------------------------------------------------------------------------------------------
# The client


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend that connects only to addresses the policy allows."""

    def __init__(self, allow: AllowList | None = None) -> None:
        self._allow = allow
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = vet(host, port, self._allow)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        failure: Exception | None = None
        for address in addresses:  # the vetted addresses themselves: no second lookup
            try:
                return self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"no address for {host}")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise OutboundRefused("本机套接字")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The system's CA bundle, loaded once (~25 ms, more than a local request)."""
    return httpx.create_ssl_context()


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over `GuardedBackend` (no proxy, no Unix socket)."""

    def __init__(self, allow: AllowList | None = None) -> None:
        super().__init__(verify=tls_context(), trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=tls_context(),
            max_connections=20,
            max_keepalive_connections=5,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(allow),
        )


def client(timeout: httpx.Timeout, allow: AllowList | None = None) -> httpx.Client:
    """An httpx client for user-given URLs: guarded, no redirects, no environment proxies.

    `allow` None reads `DANGJIAN_OUTBOUND_ALLOW` at every connection. A refused address raises
    `OutboundRefused` (an `httpx.ConnectError`) from the request.
    """
    return httpx.Client(
        transport=GuardedTransport(allow),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
