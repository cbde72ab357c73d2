"""Every metric Syncline records, in one place: names, units and labels follow
OpenTelemetry's conventions (dots, units in UCUM, ``error.type`` for failures),
and each label takes a bounded set of values (function paths come from the
deployed code, never from requests)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from syncline._errors import SynclineError

_meter = metrics.get_meter("syncline")

LATENCY_BUCKETS_SECONDS: Sequence[float] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS: Sequence[float] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

function_duration = _meter.create_histogram(
    "syncline.function.duration",
    unit="s",
    description="Time to run a client's query, mutation or action, by function and outcome",
    explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_SECONDS,
)
commit_batch_size = _meter.create_histogram(
    "syncline.txn.commit.batch.size",
    unit="{commit}",
    description="Commits the txn leader wrote in one storage transaction",
    explicit_bucket_boundaries_advisory=BATCH_BUCKETS,
)
commit_batch_duration = _meter.create_histogram(
    "syncline.txn.commit.batch.duration",
    unit="s",
    description="Time the txn leader took to write one batch of commits",
    explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_SECONDS,
)
occ_conflicts = _meter.create_counter(
    "syncline.txn.occ.conflicts",
    unit="{conflict}",
    description="Commits refused because something they read changed meanwhile",
)
update_latency = _meter.create_histogram(
    "syncline.sync.update.latency",
    unit="s",
    description="From a commit's timestamp to its results being ready to push to subscribers",
    explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_SECONDS,
)
sessions = _meter.create_up_down_counter(
    "syncline.sync.sessions",
    unit="{session}",
    description="Client sessions open on this node",
)
query_reruns = _meter.create_counter(
    "syncline.sync.query.reruns",
    unit="{query}",
    description="Subscribed queries re-run because a commit or presence room changed them",
)
rate_limit_refusals = _meter.create_counter(
    "syncline.ratelimit.refusals",
    unit="{request}",
    description="Requests refused by a rate limit, by bucket kind (ip, ip-connect, user, fn)",
)
scheduler_lateness = _meter.create_histogram(
    "syncline.scheduler.job.lateness",
    unit="s",
    description="How long after its due time a scheduled function started",
    explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_SECONDS,
)


@contextlib.contextmanager
def recorded_call(kind: str, *, record: bool = True) -> Iterator[dict[str, str]]:
    """Time a client's function call (unless not ``record``). The caller sets
    ``attributes["syncline.function.path"]`` once the function is resolved, so the
    label never holds a path a client made up; a failure records its code as
    ``error.type``."""
    attributes = {"syncline.function.kind": kind, "syncline.function.path": "unresolved"}
    start = time.perf_counter()
    try:
        yield attributes
    except SynclineError as exc:
        attributes["error.type"] = exc.code
        raise
    except Exception:
        attributes["error.type"] = "InternalError"
        raise
    finally:
        if record:
            function_duration.record(time.perf_counter() - start, attributes)


def observe_gauge(
    name: str,
    unit: str,
    description: str,
    read: Callable[[], Sequence[tuple[float, dict[str, str]]]],
) -> None:
    """A gauge read when metrics are collected: ``read`` returns (value, labels) pairs."""

    def callback(options: CallbackOptions) -> list[Observation]:
        return [Observation(value, labels) for value, labels in read()]

    _meter.create_observable_gauge(name, callbacks=[callback], unit=unit, description=description)
