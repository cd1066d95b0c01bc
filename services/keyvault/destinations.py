"""Where a provider key may be sent: no loopback, link-local or metadata address.

An admin names a provider by base URL, and keyvault then sends the key there: to check
it, and, through catalog and the proxy, on every call. A base URL that resolves to this
machine, to a link-local address (where cloud metadata services answer) or to a known
metadata endpoint would turn a key check into a request the gateway itself should never
make. Such hosts are refused unless the operator allows them by name or address, as a
laptop running a local model server would (``BYOM_ALLOWED_PROVIDER_HOSTS``).

Every address the name resolves to is checked, in every notation it may be written in
(decimal, hexadecimal, IPv4-mapped IPv6), because the resolver, not the string, decides
where a connection goes. Private network ranges stay allowed: an internal vLLM server is
an ordinary provider. A name that resolves differently later (DNS rebinding) is not
caught here; the Kubernetes egress policy is the second line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from services.keyvault.errors import InvalidConnection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services that do not sit in the link-local range.
_METADATA = frozenset(
    {
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)
_ALLOW_HINT = "an operator can allow this host with BYOM_ALLOWED_PROVIDER_HOSTS"


class DestinationPolicy:
    """Decides whether a base URL's host may receive provider keys."""

    def __init__(self, allowed_hosts: frozenset[str]) -> None:
        self._allowed = frozenset(h.strip().lower().rstrip(".") for h in allowed_hosts if h.strip())

    async def check(self, base_url: str) -> None:
        host = (urlsplit(base_url).hostname or "").lower().rstrip(".")
        if not host:
            raise InvalidConnection("base_url must name a host")

        if host in self._allowed:
            return

        for address in await _resolve(host):
            if str(address) in self._allowed:
                continue
            problem = _forbidden(address)
            if problem is not None:
                raise InvalidConnection(
                    f"base_url's host {host} resolves to {problem} address {address}; {_ALLOW_HINT}"
                )


async def _resolve(host: str) -> list[IPAddress]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InvalidConnection(f"base_url's host {host} does not resolve") from None

    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        addresses.append(address)
    return addresses


def _forbidden(address: IPAddress) -> str | None:
    if address in _METADATA:
        return "a cloud metadata"
    if address.is_loopback:
        return "a loopback"
    if address.is_link_local:
        return "a link-local"
    if address.is_unspecified:
        return "an unspecified"
    if address.is_multicast:
        return "a multicast"
    return None
