"""Provider connections: what they are, and the rules a new one must follow.

A connection ties a workspace to one provider account through one provider key. It is
active from the moment its key is verified and stored, until an admin disconnects it; a
disconnected connection keeps its history and masked key, but its key is gone for good.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal
from urllib.parse import urlsplit

from services.keyvault.errors import InvalidConnection
from shared.secrets import ProviderKey

ConnectionStatus = Literal["active", "disconnected"]
# The owner recorded for the install operator's connections, in place of a workspace id
# (workspace ids are UUIDs, so the two never meet). Their models are offered to
# workspaces as managed models.
INSTALL_SCOPE: Final = "install"
# Managed models are named "managed/<connection>/<model>": a workspace connection named
# "managed" could otherwise give one of its models the very same name.
RESERVED_NAMES: Final = frozenset({"managed"})
NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,39}$"
_NAME: Final = re.compile(NAME_PATTERN)
_MAX_BASE_URL_LENGTH: Final = 2000
_MAX_KEY_LENGTH: Final = 4096
# Kinds whose servers may take no key at all: a local vLLM, Ollama or LM Studio.
_KEYLESS_KINDS: Final = frozenset({"openai-compatible"})


@dataclass(frozen=True, slots=True)
class Connect:
    """Connect a workspace to a provider with a key the provider must accept first."""

    workspace_id: str
    provider: str
    name: str
    base_url: str | None
    api_key: ProviderKey


@dataclass(frozen=True, slots=True)
class RotateKey:
    """Replace a connection's key with one the provider accepts; the old one stays otherwise."""

    workspace_id: str
    connection_id: str
    api_key: ProviderKey


@dataclass(frozen=True, slots=True)
class Disconnect:
    """End a connection and destroy its key."""

    workspace_id: str
    connection_id: str


@dataclass(frozen=True, slots=True)
class KeyReads:
    """How often one service was handed one version of a connection's key."""

    reader: str
    secret_version: int
    read_count: int
    first_read_at: datetime
    last_read_at: datetime


@dataclass(frozen=True, slots=True)
class Connection:
    """A workspace's link to a provider, as admins see it: never the key itself."""

    id: str
    workspace_id: str
    provider: str
    name: str
    base_url: str
    status: ConnectionStatus
    masked_key: str
    fingerprint: str
    secret_version: int
    connected_at: datetime
    connected_by: str
    key_rotated_at: datetime | None
    disconnected_at: datetime | None
    read_count: int
    last_read_at: datetime | None
    # Who was handed the key, which version of it and how often; newest versions first.
    reads: tuple[KeyReads, ...] = ()

    @property
    def stream_id(self) -> str:
        return stream_id(self.id)

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    @property
    def is_install(self) -> bool:
        return self.workspace_id == INSTALL_SCOPE


@dataclass(frozen=True, slots=True)
class KeyRelease:
    """A plain key handed to another gateway service, with where to use it."""

    connection_id: str
    workspace_id: str
    provider: str
    base_url: str
    api_key: ProviderKey


@dataclass(frozen=True, slots=True)
class VerificationFailed:
    """The provider did not accept the key, or could not be asked; nothing was stored.

    ``message`` comes from the provider adapter, which scrubs what the provider said.
    """

    outcome: Literal["rejected", "unavailable", "unexpected"]
    message: str


def stream_id(connection_id: str) -> str:
    return f"connection-{connection_id}"


def provider_key(pasted: str | None) -> ProviderKey:
    """The key as pasted, without surrounding whitespace; the messages never quote it.

    Nothing pasted is "no key", which only some kinds accept (see :func:`require_key`).
    """
    text = (pasted or "").strip()
    if not text:
        return ProviderKey.none()

    if len(text) > _MAX_KEY_LENGTH:
        raise InvalidConnection(f"api_key is longer than {_MAX_KEY_LENGTH} characters")

    # The key travels in an HTTP header: one token of printable ASCII.
    if not text.isascii() or any(ch.isspace() or not ch.isprintable() for ch in text):
        raise InvalidConnection("api_key must be printable ASCII without spaces or line breaks")

    return ProviderKey(text)


def require_key(provider: str, key: ProviderKey) -> None:
    """Refuse "no key" for a provider whose API always wants one."""
    if not key and provider not in _KEYLESS_KINDS:
        raise InvalidConnection(
            f"api_key is required for {provider}; only an openai-compatible server "
            "may be connected without one"
        )


def check_provider(provider: str, known: tuple[str, ...]) -> str:
    if provider not in known:
        raise InvalidConnection(f"provider must be one of: {', '.join(known)}")

    return provider


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidConnection(
            "a connection name is 1 to 40 lowercase letters, digits or '-', "
            "starting with a letter or digit"
        )

    if name in RESERVED_NAMES:
        raise InvalidConnection(f"the connection name {name!r} is reserved; choose another")

    return name


def resolve_base_url(provider: str, given: str | None, default: str | None) -> str:
    """The base URL to use: the one given, else the provider's documented one."""
    base_url = (given or "").strip() or default
    if base_url is None:
        raise InvalidConnection(f"a {provider} connection needs a base_url")

    _check_base_url(base_url)
    return base_url.rstrip("/")


def _check_base_url(base_url: str) -> None:
    if len(base_url) > _MAX_BASE_URL_LENGTH:
        raise InvalidConnection(f"base_url is longer than {_MAX_BASE_URL_LENGTH} characters")

    try:
        parts = urlsplit(base_url)
        hostname = parts.hostname
    except ValueError:
        raise InvalidConnection("base_url is not a valid URL") from None

    if parts.scheme not in ("http", "https") or not hostname:
        raise InvalidConnection("base_url must be an http or https URL with a host")

    # The base URL is shown to admins and travels in events: it must not carry credentials.
    if parts.username is not None or parts.password is not None:
        raise InvalidConnection("base_url must not contain credentials; send the key as api_key")

    if parts.query or parts.fragment:
        raise InvalidConnection("base_url must not have a query or a fragment")

    # Link-local addresses hold cloud metadata services; a key must never be sent there.
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        return

    if address.is_link_local:
        raise InvalidConnection("base_url must not point at a link-local address")
