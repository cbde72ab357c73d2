"""Metrics: recorded through OpenTelemetry everywhere, exported in Prometheus's text
format by each service process that configures it."""

from syncline.telemetry._export import CONTENT_TYPE, Telemetry, configure_metrics, configured
from syncline.telemetry._instruments import (
    commit_batch_duration,
    commit_batch_size,
    function_duration,
    observe_gauge,
    occ_conflicts,
    query_reruns,
    rate_limit_refusals,
    recorded_call,
    scheduler_lateness,
    sessions,
    update_latency,
)
from syncline.telemetry._logs import JsonLogFormatter, configure_logging
from syncline.telemetry._tracing import (
    TracedFrame,
    context_from,
    current_traceparent,
    links_to,
    publish_span,
    traced_frame,
    tracer,
)

__all__ = [
    "CONTENT_TYPE",
    "JsonLogFormatter",
    "Telemetry",
    "TracedFrame",
    "commit_batch_duration",
    "commit_batch_size",
    "configure_logging",
    "configure_metrics",
    "configured",
    "context_from",
    "current_traceparent",
    "function_duration",
    "links_to",
    "observe_gauge",
    "occ_conflicts",
    "publish_span",
    "query_reruns",
    "rate_limit_refusals",
    "recorded_call",
    "scheduler_lateness",
    "sessions",
    "traced_frame",
    "tracer",
    "update_latency",
]
