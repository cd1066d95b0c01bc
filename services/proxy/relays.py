"""How a provider's answer reaches the client: passed through, or translated on the way.

A :class:`Reply` knows both forms of one call's answer: the whole body of a plain call
(:meth:`Reply.answer`) and a fresh :class:`StreamRelay` for a stream. Two kinds:

- :class:`NativeReply`: the client speaks the provider's own dialect (OpenAI chat to an
  OpenAI-style server, Anthropic Messages to Anthropic). The provider's bytes go back
  unchanged; only usage is read on the way, and an error event inside a stream is
  re-worded so that it names the provider and cannot carry the key.
- :class:`TranslatedReply`: anything else. The adapter turns the provider's answer into
  OpenAI chat chunks (the hub), and the door's encoder writes those in the client's
  dialect (OpenAI chat, Anthropic Messages or Responses events).

Relays are fed each provider read as it arrives and give back what to send for it at
once, so nothing is buffered beyond a partial event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson
import structlog

from services.proxy.sse import EventRelay, last_sequence_number
from shared.providers import ProviderAdapter, StreamDecoder, UpstreamFailure, Usage
from shared.providers.openai_compatible import usage_of
from shared.secrets import ProviderKey
from shared.translation import OPENAI_DONE, openai_chunk, openai_stream_error

log = structlog.get_logger(__name__)


class StreamRelay(Protocol):
    """Turns a provider's stream, read by read, into the client's stream."""

    @property
    def usage(self) -> Usage | None: ...

    @property
    def failure(self) -> UpstreamFailure | None:
        """What failed midway, as told to the client; None for a whole answer."""
        ...

    def feed(self, data: bytes) -> bytes: ...

    def close(self) -> bytes:
        """The provider ended the stream: what is left to send."""
        ...

    def broken(self, failure: UpstreamFailure) -> bytes:
        """The connection to the provider failed midway: the error event to end with."""
        ...


class Encoder(Protocol):
    """Writes hub chunks in a client's stream dialect (see shared.translation)."""

    def feed(self, chunk: dict[str, Any]) -> bytes: ...

    def finish(self) -> bytes: ...

    def fail(self, failure: UpstreamFailure, provider: str | None = None) -> bytes: ...


class Reply(Protocol):
    def answer(self, content: bytes) -> tuple[bytes, Usage | None]:
        """The client's body for the provider's 2xx body, and its usage.

        UnexpectedResponse if the provider's body is not its documented answer.
        """
        ...

    def relay(self) -> StreamRelay: ...


class OpenAIChunkEncoder:
    """Hub chunks as an OpenAI chat stream, the usage chunk only if the client asked."""

    def __init__(self, *, include_usage: bool) -> None:
        self._include_usage = include_usage
        self._ended = False

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if self._ended or (not self._include_usage and not chunk.get("choices")):
            return b""

        return openai_chunk(chunk)

    def finish(self) -> bytes:
        if self._ended:
            return b""

        self._ended = True
        return OPENAI_DONE

    def fail(self, failure: UpstreamFailure, provider: str | None = None) -> bytes:
        if self._ended:
            return b""

        self._ended = True
        return openai_chunk(openai_stream_error(failure, provider))


# Renders a failure inside a stream as the client's error event: the failure, the
# provider's name, and the sequence number the event takes where the dialect numbers
# its events (Responses); the others ignore it.
ErrorEvent = Callable[[UpstreamFailure, str, int], bytes]


def openai_error_event(failure: UpstreamFailure, provider: str, _sequence: int = 0) -> bytes:
    return openai_chunk(openai_stream_error(failure, provider))


class NativeReply:
    """The provider's answer as it is: the client speaks the provider's dialect.

    ``error_event`` writes a failure in the client's stream dialect; ``is_error`` tells
    the provider's own error events, which are re-worded with it (by default none are:
    the Responses API's quote no key and are relayed as they are). ``numbered`` is for a
    dialect whose events carry a rising ``sequence_number`` (Responses): the relay notes
    the last number it passed on, so an event it adds continues the count.
    """

    def __init__(
        self,
        adapter: ProviderAdapter,
        key: ProviderKey,
        *,
        upstream_model: str,
        provider: str,
        error_event: ErrorEvent,
        numbered: bool = False,
        is_error: Callable[[dict[str, Any]], bool] = lambda payload: False,
        hide_usage_only_events: bool = False,
    ) -> None:
        self.adapter = adapter
        self.provider = provider
        self._error_event = error_event
        self.numbered = numbered
        self.is_error = is_error
        self._key = key
        self._model = upstream_model
        self._hide_usage_only = hide_usage_only_events

    def answer(self, content: bytes) -> tuple[bytes, Usage | None]:
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            # Relayed as it came: it is the provider's answer, even if not the documented one.
            log.warning("upstream_answer_not_json")
            return content, None

        usage = self.adapter.usage_from_response(body) if isinstance(body, dict) else None
        return content, usage

    def relay(self) -> PassThroughRelay:
        return PassThroughRelay(self, hide_usage_only_events=self._hide_usage_only)

    def error_event(self, failure: UpstreamFailure, next_sequence: int) -> bytes:
        return self._error_event(failure, self.provider, next_sequence)

    def failure_in(self, event: bytes) -> UpstreamFailure:
        """The provider's error event as a failure, read (and scrubbed) by its own decoder."""
        decoder = self.adapter.stream_decoder(model=self._model, key=self._key)
        decoder.feed(event if event.endswith(b"\n\n") else event + b"\n\n")
        if decoder.failure is not None:
            return decoder.failure

        return UpstreamFailure(
            f"{self.adapter.kind} failed during the stream",
            provider=self.adapter.kind,
            status=502,
            category="server_error",
        )


class PassThroughRelay:
    """The provider's own event stream, relayed as bytes; usage and errors read on the way."""

    def __init__(
        self,
        reply: NativeReply,
        *,
        hide_usage_only_events: bool,
    ) -> None:
        self._reply = reply
        self._hide_usage_only = hide_usage_only_events
        self._events = EventRelay(self._watch)
        self._usage: Usage | None = None
        self._failure: UpstreamFailure | None = None
        self._last_sequence = -1

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def failure(self) -> UpstreamFailure | None:
        return self._failure

    def feed(self, data: bytes) -> bytes:
        return self._numbered_seen(self._events.feed(data))

    def close(self) -> bytes:
        return self._numbered_seen(self._events.close())

    def broken(self, failure: UpstreamFailure) -> bytes:
        if self._failure is not None:
            return b""

        self._failure = failure
        # What is held is part of an event: sent on, it would run into the error event and
        # spoil both; it is dropped instead.
        self._events.discard()
        return self._reply.error_event(failure, self._last_sequence + 1)

    def _numbered_seen(self, relayed: bytes) -> bytes:
        if self._reply.numbered and relayed:
            last = last_sequence_number(relayed)
            if last is not None:
                self._last_sequence = last
        return relayed

    def _watch(self, event: bytes, payload: dict[str, Any]) -> bytes:
        if self._reply.is_error(payload):
            if self._failure is not None:
                return b""

            self._failure = self._reply.failure_in(event)
            return self._reply.error_event(self._failure, self._last_sequence + 1)

        usage = self._reply.adapter.usage_from_stream_event(payload)
        if usage is None:
            return event

        self._usage = usage if self._usage is None else self._usage.merged(usage)
        if self._hide_usage_only and not payload.get("choices"):
            return b""

        return event


class TranslatedReply:
    """An answer in the hub's form, turned into the client's dialect by the door."""

    def __init__(
        self,
        adapter: ProviderAdapter,
        key: ProviderKey,
        *,
        upstream_model: str,
        provider: str,
        to_client: Callable[[dict[str, Any]], dict[str, Any]],
        encoder: Callable[[], Encoder],
    ) -> None:
        self._adapter = adapter
        self._key = key
        self._model = upstream_model
        self._provider = provider
        self._to_client = to_client
        self._encoder = encoder

    def answer(self, content: bytes) -> tuple[bytes, Usage | None]:
        completion = self._adapter.response_to_openai(content, model=self._model)
        return orjson.dumps(self._to_client(completion)), usage_of(completion)

    def relay(self) -> TranslatedRelay:
        decoder = self._adapter.stream_decoder(model=self._model, key=self._key)
        return TranslatedRelay(decoder, self._encoder(), self._provider)


class TranslatedRelay:
    """The adapter's decoder turns provider reads into hub chunks; the encoder writes them."""

    def __init__(self, decoder: StreamDecoder, encoder: Encoder, provider: str) -> None:
        self._decoder = decoder
        self._encoder = encoder
        self._provider = provider
        self._failure: UpstreamFailure | None = None

    @property
    def usage(self) -> Usage | None:
        return self._decoder.usage

    @property
    def failure(self) -> UpstreamFailure | None:
        return self._failure

    def feed(self, data: bytes) -> bytes:
        return self._written(self._decoder.feed(data))

    def close(self) -> bytes:
        out = self._written(self._decoder.close())
        if self._failure is not None:
            return out

        return out + self._encoder.finish()

    def broken(self, failure: UpstreamFailure) -> bytes:
        if self._failure is not None:
            return b""

        self._failure = failure
        return self._encoder.fail(failure, self._provider)

    def _written(self, chunks: list[dict[str, Any]]) -> bytes:
        out = b"".join(self._encoder.feed(chunk) for chunk in chunks)
        failure = self._decoder.failure
        if failure is not None and self._failure is None:
            # Said as soon as the provider says it, not when it gets round to closing.
            self._failure = failure
            out += self._encoder.fail(failure, self._provider)
        return out
