"""The Grafana dashboard and docs/metrics.md, checked against the SLO rules, the client SDK and promtool.

A Grafana query with a misspelled metric or label shows an empty panel, not an error, and a doc
that lists metrics by hand drifts silently; these tests turn both into failures.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from reelserve.client._metrics import ClientMetrics
from reelserve.config import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "reelserve.json"
RULES = REPO_ROOT / "deploy" / "prometheus" / "slo_rules.yml"
DOC = REPO_ROOT / "docs" / "metrics.md"
DATASOURCE_UID = "${datasource}"

# Grafana variables a query may use, and a value that makes the query plain PromQL for promtool.
GRAFANA_VARS = {"__rate_interval": "5m", "model": "video_features", "step": "preprocess"}
_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")

# A small PromQL lexer, just enough to find metric names: strings, label matchers, ranges and
# grouping clauses hold no metric names; an identifier followed by "(" is a function.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*(?![\w:])")
_SELECTOR = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)\s*\{([^{}]*)\}")
_LABEL_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
_KEYWORDS |= {"inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, keywords, labels or numbers)."""
    text = _STRING.sub('""', expr)
    for pattern in (_MATCHERS, _RANGE, _GROUPING):
        text = pattern.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        if text[m.end() :].lstrip().startswith("(") or m.group().lower() in _KEYWORDS:
            continue
        names.add(m.group())
    return names


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names it is matched on) for every `metric{...}` in the expression."""
    text = _STRING.sub('""', expr)
    return [(m.group(1), set(_LABEL_MATCHER.findall(m.group(2)))) for m in _SELECTOR.finditer(text)]


def substitute(expr: str) -> str:
    """The query with Grafana's variables replaced, as Grafana would before sending it."""

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in GRAFANA_VARS, f"unknown Grafana variable ${name} in {expr!r}"
        return GRAFANA_VARS[name]

    return _VAR.sub(value, expr)


# --- what the dashboard, the rules, the SDK and the doc hold


@dataclass(frozen=True)
class Family:
    type: str  # counter, gauge, histogram, summary
    labels: frozenset[str]
    source: str

    def samples(self, name: str) -> dict[str, frozenset[str]]:
        """Series names this family exposes, each with the labels it may be matched on."""
        if self.type == "histogram":
            return {f"{name}_bucket": self.labels | {"le"}, f"{name}_count": self.labels, f"{name}_sum": self.labels}
        if self.type == "summary":
            return {name: self.labels, f"{name}_count": self.labels, f"{name}_sum": self.labels}
        return {name: self.labels}


@cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels() -> list[dict[str, Any]]:
    """Top-level panels and those inside collapsed rows."""
    out = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL with Grafana variables substituted) for every panel target and variable query."""
    queries = []
    for panel in all_panels():
        for target in panel.get("targets", []):
            where = f"panel {panel['id']} {panel.get('title')!r} target {target.get('refId')}"
            queries.append((where, substitute(target["expr"])))
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"\s*label_values\((.+),\s*\w+\)\s*", query)
            assert m, f"variable {var['name']}: expected label_values(<selector>, <label>), got {query!r}"
            queries.append((f"variable {var['name']}", substitute(m.group(1))))
    return queries


@cache
def slo_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def recording_rules() -> set[str]:
    return {r["record"] for r in slo_rules() if "record" in r}


def alerts() -> set[str]:
    return {r["alert"] for r in slo_rules() if "alert" in r}


@cache
def client_families() -> dict[str, Family]:
    """The SDK's metric families, by the name `client/_metrics.py` gives them, read from a fresh registry."""
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    # prometheus_client keeps label names private; the registry's families carry no samples until used.
    labels = {m._name: frozenset(m._labelnames) for m in vars(metrics).values()}
    families = {}
    for family in registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        families[name] = Family(family.type, labels[family.name], "client SDK")
    assert families, "client/_metrics.py defines no metrics?"
    return families


@cache
def frontdoor_families() -> dict[str, Family]:
    """The front door's metric families (`reelserve/frontdoor/metrics.py`), read like the SDK's."""
    from reelserve.frontdoor.metrics import FrontDoorMetrics

    metrics = FrontDoorMetrics()
    labels = {m._name: frozenset(m._labelnames) for m in vars(metrics).values() if hasattr(m, "_labelnames")}
    families = {}
    for family in metrics.registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        families[name] = Family(family.type, labels[family.name], "front door")
    assert families, "reelserve/frontdoor/metrics.py defines no metrics?"
    return families


@cache
def doc_text() -> str:
    return DOC.read_text()


@cache
def doc_metrics() -> dict[str, Family]:
    """Rows of the "## Metrics" table in docs/metrics.md: | `name` | type | labels | unit | source | ..."""
    section = doc_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`([A-Za-z_:][\w:]*)`", cells[0])
        if m and len(cells) >= 5:
            rows[m.group(1)] = Family(cells[1], frozenset(re.findall(r"`(\w+)`", cells[2])), cells[4])
    assert rows, "docs/metrics.md has no metric rows under '## Metrics'"
    return rows


def doc_names() -> set[str]:
    """Every `code` token in the doc, with `prefix{a,b}` expanded to prefixa, prefixb."""
    names = set()
    for token in re.findall(r"`([^`]+)`", doc_text()):
        m = re.fullmatch(r"(.*)\{([\w,]+)\}", token)
        names |= {m.group(1) + alt for alt in m.group(2).split(",")} if m else {token}
    return names


def triton_families() -> dict[str, Family]:
    return {name: f for name, f in doc_metrics().items() if f.source == "Triton"}


def source_series() -> dict[str, tuple[str, frozenset[str]]]:
    """Series name -> (documented family name, labels) for the client SDK's, Triton's and the front door's metrics."""
    series = {}
    for families in (client_families(), triton_families(), frontdoor_families()):
        for name, family in families.items():
            series.update({s: (name, labels) for s, labels in family.samples(name).items()})
    return series


def known_names() -> set[str]:
    return recording_rules() | set(source_series()) | {"ALERTS"}


def unknown_names(expr: str) -> set[str]:
    return metric_names(expr) - known_names()


# --- structure


def test_dashboard_has_the_structure_grafana_needs() -> None:
    d = dashboard()
    assert d["title"] and re.fullmatch(r"[\w-]{1,40}", d["uid"]), (d.get("title"), d.get("uid"))
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36, d["schemaVersion"]
    ids = [p["id"] for p in all_panels()]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    for panel in all_panels():
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        assert isinstance(panel["id"], int) and panel["type"] and panel["title"], where
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), where
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, f"{where}: {grid}"
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat"}, f"{where}: {panel['type']}"
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, where
        assert panel["targets"], f"{where} has no queries"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{where}: duplicate refIds {refs}"
        for target in panel["targets"]:
            assert isinstance(target["expr"], str) and target["expr"].strip(), f"{where} {target['refId']}"
            assert target["datasource"]["uid"] == DATASOURCE_UID, f"{where} {target['refId']}"


def test_datasource_and_model_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    model = variables["model"]
    assert model["type"] == "query" and model["datasource"]["uid"] == DATASOURCE_UID
    assert "label_values(" in json.dumps(model["query"])
    used = {
        m.group(1) or m.group(2) for p in all_panels() for t in p.get("targets", []) for m in _VAR.finditer(t["expr"])
    }
    assert used - {"__rate_interval"} <= set(variables), f"queries use undefined variables: {used - set(variables)}"


# --- PromQL


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: `.ci/run` installs Debian's `prometheus` package (apt-get install prometheus)"
    return path


def promtool_check(promtool: str, tmp_path: Path, queries: list[tuple[str, str]]) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on the queries written as recording rules: promtool parses every expression."""
    rules = [{"record": "dashboard:" + re.sub(r"\W+", "_", where).strip("_"), "expr": expr} for where, expr in queries]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "grafana-dashboard", "rules": rules}]}, indent=1))  # JSON is YAML
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)


def test_every_query_parses(promtool: str, tmp_path: Path) -> None:
    queries = dashboard_queries()
    run = promtool_check(promtool, tmp_path, queries)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(queries)} rules found" in run.stdout, run.stdout


def test_promtool_check_rejects_a_broken_query(promtool: str, tmp_path: Path) -> None:
    run = promtool_check(promtool, tmp_path, [("broken", "sum by (model) (rate(nv_inference_count[5m])")])
    assert run.returncode != 0, run.stdout


def test_every_metric_in_the_dashboard_is_known() -> None:
    unknown = {where: sorted(unknown_names(expr)) for where, expr in dashboard_queries() if unknown_names(expr)}
    assert not unknown, (
        f"metrics that are no recording rule, no client metric, no Triton metric in docs/metrics.md: {unknown}"
    )


def test_label_matchers_use_labels_the_metric_has() -> None:
    series = source_series()
    wrong = {}
    for where, expr in dashboard_queries():
        for metric, labels in selectors(expr):
            if metric in series and not labels <= series[metric][1]:
                wrong[f"{where}: {metric}"] = sorted(labels - series[metric][1])
    assert not wrong, f"label names the metric does not have: {wrong}"


def test_checks_catch_a_misspelled_metric_or_label() -> None:
    """The name checks above can fail: a typo is found, known names are not flagged."""
    expr = 'sum by (model, le) (rate(reelserve_client_request_duraton_seconds_bucket{model=~"a|b"}[5m])) / 1e-3'
    assert metric_names(expr) == {"reelserve_client_request_duraton_seconds_bucket"}
    assert unknown_names(expr) == {"reelserve_client_request_duraton_seconds_bucket"}
    good = "histogram_quantile(0.99, sum by (le) (rate(reelserve_client_request_duration_seconds_bucket[5m])))"
    assert unknown_names(good) == set()
    assert unknown_names("reelserve:step_queue_p99:us or ALERTS or nv_inference_count") == set()
    assert selectors('nv_inference_count{modle="x", version!="1"}') == [("nv_inference_count", {"modle", "version"})]
    assert not {"modle"} <= source_series()["nv_inference_count"][1]


def test_every_alert_is_on_the_dashboard() -> None:
    exprs = "\n".join(expr for _, expr in dashboard_queries())
    missing = sorted(a for a in alerts() if f'alertname="{a}"' not in exprs)
    assert alerts() and not missing, f"alerts without a panel: {missing}"


# --- docs/metrics.md


def test_doc_lists_every_metric_the_rules_and_dashboard_use() -> None:
    series = source_series()
    used = {name for _, expr in dashboard_queries() for name in metric_names(expr)}
    used |= {name for rule in slo_rules() for name in metric_names(rule["expr"])}
    documented, names = doc_metrics(), doc_names()
    missing = set()
    for name in used:
        if name in series:
            missing |= {series[name][0]} - set(documented)
        elif name in recording_rules() or name == "ALERTS":
            missing |= {name} - names - set(documented)
        else:
            missing.add(name)  # neither SDK nor documented Triton metric nor rule
    missing |= (recording_rules() | alerts()) - names
    assert not missing, f"not described in docs/metrics.md: {sorted(missing)}"


def test_doc_client_rows_match_the_sdk() -> None:
    documented = {n: f for n, f in doc_metrics().items() if f.source == "client SDK"}
    assert documented == client_families(), f"docs/metrics.md {documented} != client/_metrics.py {client_families()}"


def test_doc_front_door_rows_match_the_code() -> None:
    documented = {n: f for n, f in doc_metrics().items() if f.source == "front door"}
    assert documented == frontdoor_families(), f"docs/metrics.md {documented} != {frontdoor_families()}"


def read_metrics(url: str, timeout_s: float = 30) -> str:
    """The exposition text; retried because Triton opens its metrics port after gRPC reports ready."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.integration
def test_doc_triton_metrics_are_exported_by_tritonserver(tritonserver) -> None:
    """Every Triton row of the doc is on a real server's /metrics, with that type and those labels.

    No request is sent: every family (summaries included) has its series from model load, and a
    server warmed here would make test_prometheus_live's traffic end sooner than its first scrape.
    """
    exposition = read_metrics(tritonserver.metrics_url)
    served = {
        f.name: Family(f.type, frozenset(k for s in f.samples for k in s.labels), "Triton")
        for f in text_string_to_metric_families(exposition)
    }
    wrong = {name: (doc, served.get(name)) for name, doc in triton_families().items() if served.get(name) != doc}
    assert triton_families() and not wrong, f"(doc, server) differ: {wrong}; server has {sorted(served)}"
