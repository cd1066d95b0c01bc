"""Where keyvault may send a provider key: never loopback, link-local or metadata, however written."""

from __future__ import annotations

import pytest

from services.keyvault.destinations import DestinationPolicy
from services.keyvault.errors import InvalidConnection

NO_EXCEPTIONS = DestinationPolicy(frozenset())


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/latest",
        "http://169.254.169.254./v1",
        "http://2852039166/v1",
        "http://0xa9fea9fe/v1",
        "http://[::ffff:169.254.169.254]/v1",
        "http://[fd00:ec2::254]/v1",
        "http://100.100.100.200/v1",
        "http://127.0.0.1:8900/v1",
        "http://2130706433:8900/v1",
        "http://0x7f000001:8900/v1",
        "http://[::ffff:127.0.0.1]:8900/v1",
        "http://[::1]:8900/v1",
        "http://localhost:8900/v1",
        "http://0.0.0.0:8900/v1",
    ],
)
async def test_loopback_link_local_and_metadata_hosts_are_refused_in_every_notation(
    base_url: str,
) -> None:
    """A host that resolves to this machine or a metadata service is refused, whatever notation names it."""
    with pytest.raises(InvalidConnection, match="BYOM_ALLOWED_PROVIDER_HOSTS"):
        await NO_EXCEPTIONS.check(base_url)


async def test_private_network_servers_stay_allowed() -> None:
    """An internal model server on a private address is an ordinary provider."""
    await NO_EXCEPTIONS.check("http://10.20.30.40:8000/v1")
    await NO_EXCEPTIONS.check("https://192.168.1.5/v1")


async def test_an_allowed_host_is_let_through_by_name_or_by_address() -> None:
    """Allowing 127.0.0.1 admits it in any notation that resolves to it, and nothing else on loopback."""
    policy = DestinationPolicy(frozenset({"127.0.0.1"}))

    await policy.check("http://127.0.0.1:8900/v1")
    await policy.check("http://2130706433:8900/v1")
    with pytest.raises(InvalidConnection):
        await policy.check("http://[::1]:8900/v1")
    with pytest.raises(InvalidConnection):
        await policy.check("http://169.254.169.254/v1")
