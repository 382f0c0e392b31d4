"""Numbers a run is judged by: latency percentiles, throughput, errors by status, SLO attainment."""

from __future__ import annotations

from collections import Counter

import numpy as np

from .runner import RunResult

PERCENTILES = (50, 90, 99, 99.9)


def percentiles_ms(latencies_s: np.ndarray) -> dict[str, float]:
    if latencies_s.size == 0:
        return {f"p{p:g}": float("nan") for p in PERCENTILES} | {"mean": float("nan"), "max": float("nan")}
    ms = latencies_s * 1000.0
    out = {f"p{p:g}": float(np.percentile(ms, p)) for p in PERCENTILES}
    return out | {"mean": float(ms.mean()), "max": float(ms.max())}


def summarize(run: RunResult, slo_ms: float) -> dict:
    """One run's report row. Latency percentiles are over OK answers; attainment is over everything sent.

    SLO attainment = share of requests sent that came back OK within `slo_ms`, so errors and
    unfinished requests count against it (a fast error is not a met SLO).
    """
    samples = run.samples
    ok = np.array([s.latency_s for s in samples if s.status == "OK"])
    statuses = Counter(s.status for s in samples)
    sent = len(samples)
    done = [s.done_s for s in samples if np.isfinite(s.done_s)]
    # Completions per second over the span from the first send to the last answer.
    span = max(done) if done else run.wall_s
    lags = np.array([s.sent_s - s.intended_s for s in samples if np.isfinite(s.sent_s)])
    by_kind = {}
    for kind in dict.fromkeys(s.kind for s in samples):
        mine = [s for s in samples if s.kind == kind]
        lat = np.array([s.latency_s for s in mine if s.status == "OK"])
        service = [s.done_s - s.sent_s for s in mine if s.status == "OK"]  # without the generator's send lag
        by_kind[kind] = {"sent": len(mine), "ok": int(lat.size)} | percentiles_ms(lat)
        by_kind[kind]["service_mean_ms"] = float(np.mean(service) * 1000.0) if service else float("nan")
    within = int(np.count_nonzero(ok * 1000.0 <= slo_ms))
    return {
        "mode": run.mode,
        "target": run.target,
        "offered_rps": run.offered_rps,
        "concurrency": run.concurrency,
        "arrival": run.arrival,
        "duration_s": run.duration_s,
        "wall_s": run.wall_s,
        "sent": sent,
        "ok": int(ok.size),
        "statuses": dict(sorted(statuses.items())),
        "error_rate": (sent - ok.size) / sent if sent else float("nan"),
        "throughput_rps": ok.size / span if span > 0 else float("nan"),
        # OK answers per second of sending (the SDK's deadline already turned late ones into errors)
        "goodput_rps": ok.size / run.duration_s if run.duration_s > 0 else float("nan"),
        "latency_ms": percentiles_ms(ok),
        "slo_ms": slo_ms,
        "slo_attainment": within / sent if sent else float("nan"),
        # open loop: how late the generator sent (its own saturation shows here, not hidden)
        "send_lag_p99_ms": float(np.percentile(lags, 99) * 1000.0) if lags.size else float("nan"),
        "by_kind": by_kind,
    }


def meets_slo(row: dict, p99_ms: float, max_error_rate: float = 0.0) -> bool:
    """p99 of OK answers within the target and no more errors than allowed (capacity searches)."""
    p99 = row["latency_ms"]["p99"]
    return bool(row["ok"]) and p99 <= p99_ms and row["error_rate"] <= max_error_rate
