#!/usr/bin/env python3
"""Copies the alert groups of monitoring/alerts.yml (the one source) to the places that
cannot read it: the PrometheusRule of k8s/components/monitoring (kustomize loads no file
outside a kustomization) and the Helm chart's monitoring/alerts.yml (Helm reads only files
inside the chart).   scripts/gen-prometheusrule.py [--check]
--check: write nothing, exit 1 if a copy differs (tests/k8s/test_monitoring.py runs it)."""
import pathlib
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
SOURCE = REPO / "monitoring" / "alerts.yml"
class _Dumper(yaml.SafeDumper):
    """Multi-line PromQL as literal blocks, as in the source."""


_Dumper.add_representer(str, lambda d, v: d.represent_scalar(
    "tag:yaml.org,2002:str", v, style="|" if "\n" in v else None))

HEADER = "# GENERATED from monitoring/alerts.yml by scripts/gen-prometheusrule.py: edit that file, then run it.\n"


def outputs() -> dict[pathlib.Path, str]:
    text = SOURCE.read_text()
    groups = yaml.safe_load(text)["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "wasm-visits", "labels": {"app.kubernetes.io/part-of": "wasm-visits"}},
        "spec": {"groups": groups},
    }
    return {
        REPO / "k8s/components/monitoring/prometheusrule.yaml":
            HEADER + yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=120),
        REPO / "k8s/helm/wasm-visits/monitoring/alerts.yml": HEADER + text,
    }


def main() -> int:
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        print(__doc__, file=sys.stderr)
        return 2
    stale = []
    for path, content in outputs().items():
        if path.exists() and path.read_text() == content:
            continue
        stale.append(path.relative_to(REPO))
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    if check and stale:
        print(f"stale copies of monitoring/alerts.yml: {', '.join(map(str, stale))}; "
              "run scripts/gen-prometheusrule.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
