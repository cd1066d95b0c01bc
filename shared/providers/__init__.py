"""Provider adapters: check a key, list models, carry a chat request.

Each adapter knows one provider's wire format. Services pick one by the connection's
provider kind through :func:`adapter_for`.
"""

from shared.providers.base import (
    ChatUpstreamRequest,
    Endpoint,
    KeyRejected,
    ProviderAdapter,
    ProviderError,
    ProviderUnavailable,
    UnexpectedResponse,
    UpstreamModel,
    Usage,
)
from shared.providers.registry import adapter_for, known_kinds

__all__ = [
    "ChatUpstreamRequest",
    "Endpoint",
    "KeyRejected",
    "ProviderAdapter",
    "ProviderError",
    "ProviderUnavailable",
    "UnexpectedResponse",
    "UpstreamModel",
    "Usage",
    "adapter_for",
    "known_kinds",
]
