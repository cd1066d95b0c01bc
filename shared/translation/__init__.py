"""Translation between the client dialects the gateway serves and its hub format.

The hub is OpenAI's Chat Completions format: a request, a ``chat.completion`` answer and
``chat.completion.chunk`` stream events. Every provider adapter in
:mod:`shared.providers` takes a hub request and gives back hub answers and chunks, so
each client dialect needs one translation to the hub and one back, not one per provider.
OpenAI chat is the hub because it is the dialect most clients and most providers
already speak, so the common case (an OpenAI-style client to an OpenAI-style server)
needs no translation at all, and the proxy passes its bytes through.

Front doors translated here:

- Anthropic Messages (``POST /v1/messages``): :func:`anthropic_to_openai_request`,
  :func:`openai_to_anthropic_response`, :class:`AnthropicStreamEncoder`, and
  :func:`estimate_input_tokens` for ``/v1/messages/count_tokens`` when the target is not
  Anthropic.
- OpenAI Responses (``POST /v1/responses``): :func:`responses_to_chat_request`,
  :func:`chat_to_responses_response`, :class:`ResponsesStreamEncoder`.
- Errors in either dialect: :mod:`shared.translation.errors`.

A translation refuses what it cannot carry with
:class:`shared.providers.UnsupportedFeature`, whose ``field`` names the request field.
"""

from shared.providers.base import UnsupportedFeature, UpstreamFailure
from shared.translation.anthropic_request import anthropic_field, anthropic_to_openai_request
from shared.translation.anthropic_response import openai_to_anthropic_response
from shared.translation.anthropic_stream import AnthropicStreamEncoder
from shared.translation.errors import (
    ErrorReply,
    anthropic_failure,
    anthropic_unsupported,
    openai_failure,
    openai_stream_error,
    openai_unsupported,
)
from shared.translation.responses import chat_to_responses_response, responses_to_chat_request
from shared.translation.responses_stream import ResponsesStreamEncoder
from shared.translation.sse import OPENAI_DONE, named_event, openai_chunk
from shared.translation.tokens import estimate_input_tokens

__all__ = [
    "OPENAI_DONE",
    "AnthropicStreamEncoder",
    "ErrorReply",
    "ResponsesStreamEncoder",
    "UnsupportedFeature",
    "UpstreamFailure",
    "anthropic_failure",
    "anthropic_field",
    "anthropic_to_openai_request",
    "anthropic_unsupported",
    "chat_to_responses_response",
    "estimate_input_tokens",
    "named_event",
    "openai_chunk",
    "openai_failure",
    "openai_stream_error",
    "openai_to_anthropic_response",
    "openai_unsupported",
    "responses_to_chat_request",
]
