"""Structured logs: JSON lines when not on a terminal, with secrets scrubbed.

Every log record, ours or a library's, passes through the same processors: context
bound with ``structlog.contextvars`` (request id, workspace, event id), the current
trace id, and a redaction step that blanks fields known to carry secrets and masks
anything shaped like a provider key or a gateway token wherever it appears.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

_SECRET_FIELDS = frozenset(
    {
        "api_key",
        "apikey",
        "authorization",
        "key",
        "password",
        "provider_key",
        "secret",
        "service_secret",
        "token",
        "x-api-key",
        "x-goog-api-key",
    }
)
# Provider keys and gateway tokens share recognisable shapes; a value matching one is
# masked even inside free text, such as an exception message quoting an upstream body.
_SECRET_PATTERN = re.compile(
    r"(?:sk|pk|rk|gsk|xai|byom|AIza)[-_][A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9_\-\.=]{8,}"
)
_REDACTED = "[redacted]"


def scrub(text: str) -> str:
    """Mask every substring shaped like a key or bearer credential."""
    return _SECRET_PATTERN.sub(_REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)

    if isinstance(value, dict):
        return {
            k: (_REDACTED if str(k).lower() in _SECRET_FIELDS else _redact_value(v))
            for k, v in value.items()
        }

    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]

    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for name in list(event_dict):
        if name.lower() in _SECRET_FIELDS:
            event_dict[name] = _REDACTED
        else:
            event_dict[name] = _redact_value(event_dict[name])

    return event_dict


def add_trace_id(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")

    return event_dict


def configure_logging(service: str, level: str = "INFO", json: bool | None = None) -> None:
    """Route structlog and the standard library through one redacting pipeline."""
    as_json = (not sys.stderr.isatty()) if json is None else json
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_id,
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _bind_service(service),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Access logs are replaced by our own one line per request, which carries context.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request's full URL at INFO; adapters log each call by host instead.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def _bind_service(service: str) -> Any:
    def bind(
        _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return bind
