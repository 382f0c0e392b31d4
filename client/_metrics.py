"""Client-side Prometheus metrics: latency by model and outcome, retries, errors, in-flight calls.

Label values come from closed sets (the two ensembles, gRPC status names), so cardinality is
bounded. Metrics live in the registry the client is given (default: prometheus_client's global
one); several clients in one process share the same families.
"""

from __future__ import annotations

import threading
import weakref

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from reelserve.config import DEFAULT

# Seconds; short-video feature calls live between ~1 ms (text) and seconds (big batches on CPU).
# The latency SLI counts the calls under the SLO's bound, so each ensemble's bound is a bucket edge.
SLO_BUCKET_S = DEFAULT.slo.video_features_p99_ms / 1000
FULL_SLO_BUCKET_S = DEFAULT.slo.video_features_full_p99_ms / 1000  # video_features_full (speech)
LATENCY_BUCKETS = tuple(
    sorted(
        {0.002, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0}
        | {SLO_BUCKET_S, FULL_SLO_BUCKET_S}
    )
)


class ClientMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "reelserve_client_request_duration_seconds",
            "Wall time of a feature call as the caller sees it, retries included.",
            ["model", "outcome"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.retries = Counter(
            "reelserve_client_retries_total",
            "Attempts retried, by the status that caused them.",
            ["model", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "reelserve_client_errors_total",
            "Calls that failed, by final gRPC status.",
            ["model", "status"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "reelserve_client_in_flight_requests",
            "Feature calls started and not yet finished.",
            ["model"],
            registry=registry,
        )


_lock = threading.Lock()
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, ClientMetrics] = weakref.WeakKeyDictionary()


def metrics_for(registry: CollectorRegistry | None) -> ClientMetrics:
    """The one `ClientMetrics` of `registry` (created on first use)."""
    registry = REGISTRY if registry is None else registry
    with _lock:
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = ClientMetrics(registry)
        return metrics
