"""OpenTelemetry for every service: traces out, metrics in Prometheus format.

Traces go to an OTLP collector when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its traces
variant) is set, the standard way. ``BYOM_TRACE_FILE`` additionally writes every finished
span as a JSON line to a file, which is how tests read spans back. With neither, no
spans are made at all. Metrics are read by a
Prometheus reader and served at ``/<service>/metrics``.

Attribute values are what the code puts there: identifiers, model names, counts. A
span never carries a key or a token; the key-leak tests read the span file to prove it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson
from fastapi import FastAPI
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import Response

from shared.http import BodyLimitMiddleware, RequestLogMiddleware


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span to a file, one JSON object per line."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = b"".join(orjson.dumps(_span_record(span)) + b"\n" for span in spans)
        with self._lock, self._path.open("ab") as file:
            file.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _span_record(span: ReadableSpan) -> dict[str, object]:
    context = span.get_span_context()
    return {
        "name": span.name,
        "trace_id": format(context.trace_id, "032x") if context else None,
        "span_id": format(context.span_id, "016x") if context else None,
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events],
        "start": span.start_time,
        "end": span.end_time,
    }


class Telemetry:
    """The providers of one process, and its metrics as Prometheus text."""

    def __init__(self, service: str) -> None:
        resource = Resource.create({"service.name": f"byom-{service}", "service.namespace": "byom"})
        processors: list[SpanProcessor] = []
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        ):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processors.append(BatchSpanProcessor(OTLPSpanExporter()))
        trace_file = os.environ.get("BYOM_TRACE_FILE")
        if trace_file:
            processors.append(SimpleSpanProcessor(JsonLinesSpanExporter(Path(trace_file))))
        # With nowhere to send spans, none are made: the API's no-op tracer costs nothing,
        # where recording spans nobody reads cost the proxy about 20 us a call.
        self.tracer_provider: TracerProvider | None = None
        if processors:
            self.tracer_provider = TracerProvider(resource=resource)
            for processor in processors:
                self.tracer_provider.add_span_processor(processor)
            trace.set_tracer_provider(self.tracer_provider)

        self.registry = CollectorRegistry()
        reader = PrometheusMetricReader(registry=self.registry)
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        metrics.set_meter_provider(self.meter_provider)

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def install_metrics_route(app: FastAPI, service: str, telemetry: Telemetry) -> None:
    """``GET /<service>/metrics`` in Prometheus text format, for scraping inside the cluster."""

    async def prometheus_metrics() -> Response:
        return Response(telemetry.prometheus_text(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(
        f"/{service}/metrics", prometheus_metrics, methods=["GET"], include_in_schema=False
    )


def instrument(
    app: FastAPI, service: str, *, quiet_routes: frozenset[str] = frozenset()
) -> Telemetry:
    """Traces, metrics and one log line per request for a service's app."""
    telemetry = Telemetry(service)
    # Added first, so it runs inside the log middleware: a refused body is logged too.
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestLogMiddleware, quiet_routes=quiet_routes)
    install_metrics_route(app, service, telemetry)
    return telemetry
