"""Metrics for one process: OpenTelemetry's SDK, read in Prometheus's text format.

Code records through the OpenTelemetry API (``metrics.get_meter``), which does
nothing until a process configures the SDK here; each service process does, in its
main. So libraries and tests pay nothing, and nothing breaks without a collector.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from syncline._version import __version__
from syncline.telemetry._tracing import configure_tracing

CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass
class Telemetry:
    """This process's metrics, readable with :meth:`exposition`."""

    registry: CollectorRegistry
    provider: MeterProvider

    def exposition(self) -> bytes:
        """Every metric, in the Prometheus text format."""
        data: bytes = generate_latest(self.registry)
        return data

    def shutdown(self) -> None:
        self.provider.shutdown()


_configured: Telemetry | None = None


def configure_metrics(service: str, instance: str) -> Telemetry:
    """Make this process record metrics and traces (once per process; later calls
    return the first configuration)."""
    global _configured
    if _configured is not None:
        return _configured
    registry = CollectorRegistry(auto_describe=True)
    # The SDK keeps at most 2,000 label sets per instrument; more fold into one
    # overflow series, so a runaway label cannot exhaust memory.
    reader = PrometheusMetricReader(registry=registry)
    resource = Resource.create(
        {
            "service.name": f"syncline-{service}",
            "service.namespace": "syncline",
            "service.instance.id": instance,
            "service.version": __version__,
        }
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    metrics.set_meter_provider(provider)
    configure_tracing(service, instance, resource)
    _configured = Telemetry(registry, provider)
    return _configured


def configured() -> Telemetry | None:
    """The process's metrics, if :func:`configure_metrics` ran."""
    return _configured
