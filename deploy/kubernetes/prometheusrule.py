"""Write base/prometheusrule.yaml from deploy/prometheus/slo_rules.yml: the rules have one source.

Kustomize cannot lift a rules file into a PrometheusRule's `spec.groups` (and may not read files
outside its folder), so the PrometheusRule is generated here and committed; a test
(tests/deploy/test_kubernetes.py) fails when it no longer equals the rules file.

    python deploy/kubernetes/prometheusrule.py           # rewrite it
    python deploy/kubernetes/prometheusrule.py --check   # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "prometheus" / "slo_rules.yml"
OUT = HERE / "base" / "prometheusrule.yaml"
HEADER = (
    "# GENERATED from deploy/prometheus/slo_rules.yml by deploy/kubernetes/prometheusrule.py; do not edit.\n"
    "# Prometheus (the operator's ruleSelector) must select app.kubernetes.io/part-of=reelserve.\n"
)


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None  # PromQL stays readable
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def prometheus_rule(rules_text: str) -> dict:
    groups = yaml.safe_load(rules_text)["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "reelserve"},
        "spec": {"groups": groups},
    }


def render(rules_text: str) -> str:
    return HEADER + yaml.dump(prometheus_rule(rules_text), Dumper=_Dumper, sort_keys=False, width=10_000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed file is current")
    args = parser.parse_args(argv)
    text = render(RULES.read_text(encoding="utf-8"))
    if args.check:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run python {Path(__file__).relative_to(HERE.parent.parent)}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
