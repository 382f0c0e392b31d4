"""What the front door counts, in Prometheus form: served by `reelserve serve --replicas N` on the metrics port.

Triton counts per replica (each replica's own metrics port); these count what no single replica
sees: calls a replica lost and the relay sent elsewhere, callers that left before their answer,
load shed by full queues, and replica restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["FrontDoorMetrics"]


@dataclass
class FrontDoorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "reelserve_frontdoor_requests", "Inference calls answered through the front door, by gRPC status",
            ["code"], registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "reelserve_frontdoor_retries",
            "Inference calls sent again to another replica because theirs died under them (reason: "
            "replica_unavailable, replica_cancelled, stub_died)",
            ["replica", "reason"], registry=r,
        )  # fmt: skip
        self.abandoned = Counter(
            "reelserve_frontdoor_abandoned",
            "Calls whose caller left (deadline, cancel, closed connection) before the answer; finished and dropped",
            registry=r,
        )
        self.shed = Counter(
            "reelserve_frontdoor_shed",
            "Calls refused at once under overload (where: front_door = admission full, triton_queue = the first "
            "step's queue full)",
            ["where"], registry=r,
        )  # fmt: skip
        self.timed_out = Counter(
            "reelserve_frontdoor_timed_out",
            "Calls dropped from a step's queue because their deadline (Triton's per-request timeout) passed",
            registry=r,
        )
        self.admission_wait = Counter(
            "reelserve_frontdoor_admission_wait_seconds",
            "Seconds inference calls waited at the front door's admission before reaching Triton (or being shed): "
            "the queue Triton's own nv_inference_queue_duration_us does not see; the autoscaling ratio adds it",
            registry=r,
        )
        self.replica_restarts = Counter(
            "reelserve_replica_restarts",
            "Replica losses its supervisor acted on: a restart (or, in a crash loop, the end of supervision)",
            ["replica", "reason"], registry=r,
        )  # fmt: skip
        self.replica_up = Gauge(
            "reelserve_replica_up", "1 while the replica is ready and routed to, 0 while down or restarting",
            ["replica"], registry=r,
        )  # fmt: skip
