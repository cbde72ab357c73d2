"""Traces: one client call followed across gateway, sync node, txn leader and
PostgreSQL. Code makes spans through the OpenTelemetry API, which records nothing
until a process configures the SDK here. Spans go to an OTLP collector when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set, and as JSON
lines to ``SYNCLINE_TRACE_DIR/<service>-<instance>.jsonl`` when that is set.

Between services the W3C trace context travels with each request: in a mutation's
frame on the gateway's shared stream (``SessionFrame.traceparent``), in gRPC
metadata for single calls, and in each commit sent to the txn leader
(``CommitRequest.traceparent``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

tracer = trace.get_tracer("syncline")


class TracedFrame(str):
    """A client frame that arrived with the trace context of the gateway's span."""

    traceparent: str

    def __new__(cls, text: str, traceparent: str) -> TracedFrame:
        frame = super().__new__(cls, text)
        frame.traceparent = traceparent
        return frame


def traced_frame(text: str, traceparent: str) -> str:
    return TracedFrame(text, traceparent) if traceparent else text


def current_traceparent() -> str:
    """The W3C trace context of the current span ("" when nothing is traced)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def context_from(traceparent: str | None) -> Context | None:
    """The context a traceparent names (None for none: the span starts a trace)."""
    return propagate.extract({"traceparent": traceparent}) if traceparent else None


def links_to(traceparents: Iterable[str]) -> list[trace.Link]:
    """Links to the spans the traceparents name (the commits whose results a
    subscription step published); untraced ("") ones are skipped."""
    links = []
    for traceparent in traceparents:
        context = context_from(traceparent)
        span_context = trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            links.append(trace.Link(span_context))
    return links


def publish_span(links: list[trace.Link], attributes: dict[str, int | bool]) -> None:
    """Record that subscriptions were re-run and pushed for the linked commits."""
    # Its own trace (a step serves many commits), linked to each commit's.
    tracer.start_span("sync publish", context=Context(), links=links, attributes=attributes).end()


class JsonLinesExporter(SpanExporter):
    """Each finished span as one JSON line: for tests and for reading by hand."""

    def __init__(self, path: Path, service: str) -> None:
        self._path = path
        self._service = service
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            context = span.get_span_context()
            if context is None:
                continue
            lines.append(
                json.dumps(
                    {
                        "trace_id": f"{context.trace_id:032x}",
                        "span_id": f"{context.span_id:016x}",
                        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
                        "name": span.name,
                        "kind": span.kind.name,
                        "service": self._service,
                        "start_ns": span.start_time,
                        "end_ns": span.end_time,
                        "status": span.status.status_code.name,
                        "attributes": dict(span.attributes or {}),
                        "links": [
                            {
                                "trace_id": f"{link.context.trace_id:032x}",
                                "span_id": f"{link.context.span_id:016x}",
                            }
                            for link in span.links
                        ],
                    },
                    default=str,
                )
            )
        with self._lock, self._path.open("a") as out:
            out.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def configure_tracing(service: str, instance: str, resource: Resource) -> None:
    """Record spans in this process if the environment says where they go; with
    nowhere to go, spans stay the API's no-ops and cost nothing."""
    env = os.environ
    otlp = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    trace_dir = env.get("SYNCLINE_TRACE_DIR")
    if not otlp and not trace_dir:
        return
    provider = TracerProvider(resource=resource)
    if otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if trace_dir:
        path = Path(trace_dir) / f"{service}-{instance}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path, service)))
    trace.set_tracer_provider(provider)
