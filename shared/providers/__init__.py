"""Provider adapters: check a key, list models, carry a chat request both ways.

Each adapter knows one provider's wire format. Services pick one by the connection's
provider kind through :func:`adapter_for`. OpenAI's Chat Completions format is the hub:
every adapter takes an OpenAI chat body and gives back OpenAI completions and chunks,
whatever its provider speaks (see :mod:`shared.providers.base`). Translation between the
hub and the other client dialects lives in :mod:`shared.translation`.
"""

from shared.providers.base import (
    ChatUpstreamRequest,
    Door,
    Endpoint,
    FailureCategory,
    KeyRejected,
    ProviderAdapter,
    ProviderError,
    ProviderUnavailable,
    StreamDecoder,
    UnexpectedResponse,
    UnsupportedFeature,
    UpstreamFailure,
    UpstreamModel,
    Usage,
)
from shared.providers.failures import transport_failure
from shared.providers.registry import adapter_for, known_kinds

__all__ = [
    "ChatUpstreamRequest",
    "Door",
    "Endpoint",
    "FailureCategory",
    "KeyRejected",
    "ProviderAdapter",
    "ProviderError",
    "ProviderUnavailable",
    "StreamDecoder",
    "UnexpectedResponse",
    "UnsupportedFeature",
    "UpstreamFailure",
    "UpstreamModel",
    "Usage",
    "adapter_for",
    "known_kinds",
    "transport_failure",
]
