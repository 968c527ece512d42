"""Metric names a PromQL expression uses, and the names wasm-visits may use: the app's
contract (monitoring/README.md) plus the kube-state-metrics and ingress-nginx series the
cluster rules and the dashboard read. Shared by test_monitoring.py and its negative tests."""
from __future__ import annotations

import re

import k8s_checks as kc

# Series of other projects that the rules and the dashboard read (names as those projects
# export them: kube-state-metrics v2, ingress-nginx controller).
KUBE_STATE_METRICS = {
    "kube_deployment_status_replicas_available", "kube_deployment_spec_replicas",
    "kube_horizontalpodautoscaler_spec_min_replicas", "kube_horizontalpodautoscaler_spec_max_replicas",
    "kube_horizontalpodautoscaler_status_desired_replicas", "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_statefulset_replicas", "kube_statefulset_status_replicas_ready",
    "kube_poddisruptionbudget_status_current_healthy", "kube_poddisruptionbudget_status_desired_healthy",
}
INGRESS_NGINX = {
    "nginx_ingress_controller_requests",
    "nginx_ingress_controller_request_duration_seconds_bucket",
    "nginx_ingress_controller_request_duration_seconds_sum",
    "nginx_ingress_controller_request_duration_seconds_count",
}
PROMETHEUS = {"up"}

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
             "bool", "offset", "inf", "nan"}


def contract_metrics() -> set[str]:
    """Names in the table of monitoring/README.md; a histogram also has _bucket/_sum/_count."""
    names = set()
    for line in (kc.REPO / "monitoring" / "README.md").read_text().splitlines():
        m = re.match(r"^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*(\w+)", line)
        if m:
            names.add(m.group(1))
            if m.group(2) == "histogram":
                names |= {m.group(1) + s for s in ("_bucket", "_sum", "_count")}
    return names


# Labels Prometheus attaches to every app target: job/instance, and replica/edition/app from
# the scrape configs (local job "visits"; the ServiceMonitor of k8s/components/monitoring-native).
TARGET_LABELS = {"job", "instance", "replica", "edition", "app"}


def contract_labels() -> dict[str, set[str]]:
    """{metric: its labels} from the table of monitoring/README.md (values in parentheses
    are dropped); a histogram's _bucket series also has `le`."""
    out = {}
    for line in (kc.REPO / "monitoring" / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.match(r"^`([a-zA-Z_:][a-zA-Z0-9_:]*)`$", cells[0]) if len(cells) >= 3 else None
        if not m:
            continue
        labels = set(re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", cells[2])))
        out[m.group(1)] = labels
        if cells[1] == "histogram":
            out[m.group(1) + "_bucket"] = labels | {"le"}
            out[m.group(1) + "_sum"] = out[m.group(1) + "_count"] = labels
    return out


def selector_labels(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names its matchers use) for every `metric{...}` selector."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return [(m.group(1), set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2))))
            for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", e)]


def allowed_metrics() -> set[str]:
    return contract_metrics() | KUBE_STATE_METRICS | INGRESS_NGINX | PROMETHEUS


def metric_names(expr: str) -> set[str]:
    """Identifiers that are series selectors: drop strings, label matchers, durations,
    grouping clauses and function calls."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names
