"""The load test's files: `report.json` (everything), `report.png` (latency vs load, CDF), `report.html`."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np

from .runner import RunResult


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; null means "no data"
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _run_label(row: dict) -> str:
    if row["mode"] == "open":
        return f"{row['target']} open {row['offered_rps']:g} rps ({row['arrival']})"
    return f"{row['target']} closed c={row['concurrency']}"


MOSTLY_FAILED = 0.5  # a run with more errors than this is marked: its latency is of the few that answered


def mostly_failed(row: dict) -> bool:
    return bool(row["sent"]) and row["error_rate"] > MOSTLY_FAILED


def plot(rows: list[dict], runs: list[RunResult], path: Path, slo_ms: float) -> Path:
    """Latency vs load, goodput and errors vs load, and the latency CDF of every run.

    Latency covers OK answers only, so under overload it can *fall* while almost everything
    fails; the middle panel (goodput, error rate) and the red marks on runs where most requests
    failed keep that from reading as an improvement.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(19, 5))
    for target in dict.fromkeys(r["target"] for r in rows):
        for mode, marker in (("open", "o"), ("closed", "s")):
            mine = [r for r in rows if r["target"] == target and r["mode"] == mode and r["ok"]]
            if not mine:
                continue
            load = lambda r, m=mode: r["offered_rps"] if m == "open" else r["throughput_rps"]  # noqa: E731
            mine = sorted(mine, key=load)  # ladders visit rates out of order
            x = [load(r) for r in mine]
            for q, style in (("p50", "--"), ("p99", "-")):
                left.plot(x, [r["latency_ms"][q] for r in mine], style, marker=marker, label=f"{target} {mode} {q}")
            failed = [r for r in mine if mostly_failed(r)]
            if failed:
                left.scatter([load(r) for r in failed], [r["latency_ms"]["p99"] for r in failed], s=120,
                             facecolors="none", edgecolors="red", linewidths=2, zorder=5,
                             label=f"{target}: most requests failed (latency of the few OK)")  # fmt: skip
        opened = [r for r in rows if r["target"] == target and r["mode"] == "open"]
        opened.sort(key=lambda r: r["offered_rps"])
        if opened:
            x = [r["offered_rps"] for r in opened]
            middle.plot(x, [r["goodput_rps"] for r in opened], "-o", label=f"{target} goodput (OK/s)")
            middle.plot(x, [r["offered_rps"] * r["error_rate"] for r in opened], ":x", label=f"{target} errors/s")
    left.axhline(slo_ms, color="red", lw=1, label=f"SLO {slo_ms:g} ms")
    left.set_xlabel("offered load (open loop) or throughput (closed loop), requests/s")
    left.set_ylabel("latency of OK answers, ms (open loop: from intended send time)")
    left.set_yscale("log")
    left.set_xscale("log")  # systems differ by orders of magnitude in capacity
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)
    if middle.get_legend_handles_labels()[0]:
        top = max(r["offered_rps"] for r in rows if r["mode"] == "open")
        middle.plot([0, top], [0, top], color="grey", lw=0.8, label="offered = answered")
        middle.legend(fontsize=7)
    middle.set_xlabel("offered load, requests/s (open loop)")
    middle.set_ylabel("requests/s")
    middle.set_title("goodput and errors vs offered load", fontsize=9)
    middle.grid(True, alpha=0.3)
    for row, run in zip(rows, runs, strict=True):
        lat = np.sort([s.latency_s * 1000.0 for s in run.samples if s.status == "OK"])
        if lat.size:
            right.plot(lat, np.arange(1, lat.size + 1) / lat.size, label=_run_label(row), lw=1, drawstyle="steps-post")
    right.axvline(slo_ms, color="red", lw=1)
    right.set_xscale("log")
    right.set_xlabel("latency, ms")
    right.set_ylabel("fraction of OK answers at or below")
    right.grid(True, which="both", alpha=0.3)
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(headers: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return "–" if not math.isfinite(v) else f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def summary_lines(rows: list[dict]) -> list[str]:
    """The console table: one line per run."""
    head = (
        f"{'run':44s} {'sent':>5s} {'ok/s':>7s} {'p50':>8s} {'p90':>8s} {'p99':>8s} {'p99.9':>8s}"
        f" {'errors':>7s} {'SLO ok':>7s}"
    )
    lines = [head]
    for r in rows:
        lat = r["latency_ms"]
        lines.append(
            f"{_run_label(r):44.44s} {r['sent']:5d} {r['throughput_rps']:7.2f} {lat['p50']:8.1f} {lat['p90']:8.1f}"
            f" {lat['p99']:8.1f} {lat['p99.9']:8.1f} {r['error_rate']:7.2%} {r['slo_attainment']:7.2%}"
            + ("  MOSTLY FAILED: latency is of the few OK answers" if mostly_failed(r) else "")
        )
    return lines


def write(out: Path, meta: dict, rows: list[dict], runs: list[RunResult]) -> dict[str, Path]:
    """report.json (settings, per-run rows, server breakdown, raw samples), report.png, report.html."""
    out.mkdir(parents=True, exist_ok=True)
    slo_ms = meta["slo_ms"]
    doc = {
        "meta": meta,
        "runs": rows,
        "samples": [
            [[s.kind, round(s.intended_s, 6), round(s.latency_s, 6), s.status] for s in run.samples] for run in runs
        ],
        "samples_columns": ["kind", "intended_send_s", "latency_s", "status"],
    }
    paths = {"json": out / "report.json", "png": out / "report.png", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(_json_safe(doc), indent=1, ensure_ascii=False))
    plot(rows, runs, paths["png"], slo_ms)
    image = base64.b64encode(paths["png"].read_bytes()).decode()
    run_table = _table(
        ["run", "sent", "OK", "throughput rps", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "errors", "SLO attainment",
         "send lag p99 ms"],
        [[_run_label(r), r["sent"], r["ok"], r["throughput_rps"], r["latency_ms"]["p50"], r["latency_ms"]["p90"],
          r["latency_ms"]["p99"], r["latency_ms"]["p99.9"], ", ".join(f"{k} {v}" for k, v in r["statuses"].items()),
          f"{r['slo_attainment']:.2%}", r["send_lag_p99_ms"]] for r in rows],
    )  # fmt: skip
    server = ""
    for r in rows:
        steps = r.get("server") or {}
        if not steps:
            continue
        server += f"<h3>{html.escape(_run_label(r))}</h3>" + _table(
            ["model", "OK", "failed", "mean request ms", "mean queue ms", "mean compute ms", "mean batch"],
            [[m, s["requests_ok"], s["requests_failed"], s["mean_request_ms"], s["mean_queue_ms"],
              s["mean_compute_input_ms"] + s["mean_compute_infer_ms"] + s["mean_compute_output_ms"], s["mean_batch"]]
             for m, s in steps.items()],
        )  # fmt: skip
    settings = _table(["setting", "value"], [[k, json.dumps(v, ensure_ascii=False)] for k, v in meta.items()])
    paths["html"].write_text(
        "<!doctype html><meta charset=utf-8><title>reelserve load test</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style>"
        f"<h1>reelserve load test</h1>{settings}<h2>Runs (SLO {slo_ms:g} ms)</h2>{run_table}"
        f'<img src="data:image/png;base64,{image}" style="max-width:100%">'
        f"<h2>Server side, per model (Triton counters over each run)</h2>{server or '<p>not measured</p>'}"
    )
    return paths
