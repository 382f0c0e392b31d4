"""The server's side of a load run: Triton's `nv_inference_*` counters, scraped before and after.

Counter deltas over the run give, per model (ensemble and each step), how many requests it
finished, how long they spent queued vs computing, and how well dynamic batching packed them
(inferences per execution). These are exact over the run, unlike the summaries (sliding
window), which are reported only as "the server's recent quantiles". Metric meanings:
docs/metrics.md.
"""

from __future__ import annotations

import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

# what we read -> Triton's counter (all cumulative since server start; durations in microseconds)
COUNTERS = {
    "success": "nv_inference_request_success",
    "failure": "nv_inference_request_failure",
    "inferences": "nv_inference_count",
    "executions": "nv_inference_exec_count",
    "request_us": "nv_inference_request_duration_us",
    "queue_us": "nv_inference_queue_duration_us",
    "compute_input_us": "nv_inference_compute_input_duration_us",
    "compute_infer_us": "nv_inference_compute_infer_duration_us",
    "compute_output_us": "nv_inference_compute_output_duration_us",
}
SUMMARIES = {
    "request": "nv_inference_request_summary_us",
    "queue": "nv_inference_queue_summary_us",
    "compute_infer": "nv_inference_compute_infer_summary_us",
}

Scrape = dict[str, dict[str, float]]  # model -> key -> value (summed over versions and reasons)

# Triton's response cache, per model (present once the server runs with --cache-config; microseconds)
CACHE_COUNTERS = {
    "hits": "nv_cache_num_hits_per_model",
    "misses": "nv_cache_num_misses_per_model",
    "hit_us": "nv_cache_hit_duration_per_model",
    "miss_us": "nv_cache_miss_duration_per_model",
}


def parse(text: str) -> tuple[Scrape, dict[str, dict[str, dict[str, float]]]]:
    """Counters per model, and summary quantiles per model (`{model: {"request": {"0.99": us}}}`)."""
    by_name = {v: k for k, v in COUNTERS.items()}
    by_summary = {v: k for k, v in SUMMARIES.items()}
    counters: Scrape = defaultdict(lambda: dict.fromkeys(COUNTERS, 0.0))
    quantiles: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            model = s.labels.get("model")
            if model is None:
                continue
            if family.name in by_name and s.name in (family.name, family.name + "_total"):
                # the parser names counter samples `<name>_total`; Triton's counters have no suffix
                counters[model][by_name[family.name]] += s.value
            elif s.name in by_summary and "quantile" in s.labels:
                quantiles[model][by_summary[s.name]][s.labels["quantile"]] = s.value
    return dict(counters), {m: dict(q) for m, q in quantiles.items()}


def parse_cache(text: str) -> Scrape:
    """Response-cache counters per model that uses the cache (`CACHE_COUNTERS` keys)."""
    by_name = {v: k for k, v in CACHE_COUNTERS.items()}
    counters: Scrape = defaultdict(lambda: dict.fromkeys(CACHE_COUNTERS, 0.0))
    for family in text_string_to_metric_families(text):
        if family.name not in by_name:
            continue
        for s in family.samples:
            if "model" in s.labels and s.name in (family.name, family.name + "_total"):
                counters[s.labels["model"]][by_name[family.name]] += s.value
    return dict(counters)


def scrape_text(metrics_url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(metrics_url, timeout=timeout_s) as response:  # noqa: S310 (loopback URL we built)
        return response.read().decode()


def scrape(metrics_url: str, timeout_s: float = 5.0) -> tuple[Scrape, dict]:
    return parse(scrape_text(metrics_url, timeout_s))


def step_breakdown(before: Scrape, after: Scrape, quantiles: dict | None = None) -> dict[str, dict[str, float]]:
    """Per model over the run: requests, failures, mean ms in queue / compute / end to end, mean batch."""
    rows = {}
    for model, end in after.items():
        start = before.get(model, dict.fromkeys(COUNTERS, 0.0))
        d = {k: end[k] - start.get(k, 0.0) for k in COUNTERS}
        n = d["success"]
        if n <= 0 and d["failure"] <= 0:
            continue
        row = {"requests_ok": n, "requests_failed": d["failure"]}
        for key in ("request", "queue", "compute_input", "compute_infer", "compute_output"):
            row[f"mean_{key}_ms"] = d[f"{key}_us"] / n / 1000.0 if n > 0 else float("nan")
        row["mean_batch"] = d["inferences"] / d["executions"] if d["executions"] > 0 else float("nan")
        for kind, qs in (quantiles or {}).get(model, {}).items():
            for q in ("0.5", "0.99"):
                if q in qs:
                    row[f"recent_{kind}_p{float(q) * 100:g}_ms"] = qs[q] / 1000.0
        rows[model] = row
    return rows
