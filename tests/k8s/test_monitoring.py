"""monitoring/: the alert rules (promtool check + unit tests), their PrometheusRule copies
(kustomize and Helm, validated against prometheus-operator's CRD), the ServiceMonitor of
the native edition, and the Grafana dashboard. promtool is Debian's `prometheus` package
(scripts/setup.sh)."""
import copy
import functools
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest
import yaml

import k8s_checks as kc
import promql_names as pn

MON = kc.REPO / "monitoring"
ALERTS = ["InsufficientReplicas", "HighErrorRate", "HighLatencyP99", "BackendDown"]
GROUP_SOURCE = {"wasm-visits-app": "app", "wasm-visits-cluster": "cluster"}


def promtool() -> str:
    exe = shutil.which("promtool")
    if not exe:
        pytest.fail("promtool not found: scripts/setup.sh installs Debian's prometheus package")
    return exe


def alert_groups() -> list[dict]:
    return yaml.safe_load((MON / "alerts.yml").read_text())["groups"]


def run(*args, cwd=None):
    return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, timeout=120)


def test_promtool_check_rules():
    r = run(promtool(), "check", "rules", str(MON / "alerts.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 8 rules found" in r.stdout


def test_promtool_unit_tests():
    r = run(promtool(), "test", "rules", str(MON / "alerts.test.yml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_unit_tests_can_fail(tmp_path):
    """Raise one threshold: the firing cases written for 3 replicas must now fail."""
    shutil.copy(MON / "alerts.test.yml", tmp_path)
    text = (MON / "alerts.yml").read_text().replace("(up{job=\"visits\"}) < 3", "(up{job=\"visits\"}) < 2")
    (tmp_path / "alerts.yml").write_text(text)
    r = run(promtool(), "test", "rules", str(tmp_path / "alerts.test.yml"))
    assert r.returncode != 0 and "InsufficientReplicas" in r.stdout + r.stderr


def test_four_alerts_per_source():
    groups = alert_groups()
    assert [g["name"] for g in groups] == list(GROUP_SOURCE)
    for g in groups:
        assert [r["alert"] for r in g["rules"]] == ALERTS, g["name"]
        for r in g["rules"]:
            assert r["labels"]["source"] == GROUP_SOURCE[g["name"]]
            assert r["labels"]["severity"] in ("warning", "critical")
            assert r["annotations"]["summary"] and r["annotations"]["description"]


def test_every_alert_has_a_firing_and_a_quiet_case():
    """Each (alert, source) is expected to fire in one unit test and to stay quiet in another
    moment or case of that source (test names start with the source)."""
    tests = yaml.safe_load((MON / "alerts.test.yml").read_text())["tests"]
    fired, quiet = set(), set()
    for t in tests:
        source = t["name"].split()[0]
        assert source in GROUP_SOURCE.values(), t["name"]
        for case in t["alert_rule_test"]:
            if case["exp_alerts"]:
                for a in case["exp_alerts"]:
                    assert a["exp_labels"]["source"] == source, t["name"]
                    fired.add((case["alertname"], source))
            else:
                quiet.add((case["alertname"], source))
    want = {(a, s) for a in ALERTS for s in GROUP_SOURCE.values()}
    assert fired == want, want - fired
    assert quiet == want, want - quiet


def rule_exprs() -> list[str]:
    return [r["expr"] for g in alert_groups() for r in g["rules"]]


def dashboard() -> dict:
    return json.loads((MON / "grafana-dashboard.json").read_text())


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


def test_metric_names_are_known():
    """Alerts and dashboard read only the contract's metrics (monitoring/README.md) and the
    kube-state-metrics / ingress-nginx / Prometheus series listed in promql_names.py."""
    allowed = pn.allowed_metrics()
    assert "visits_http_requests_total" in allowed and "runner_admission_waiting" in allowed
    for expr in rule_exprs() + dashboard_exprs():
        names = pn.metric_names(expr)
        assert names, expr
        assert names <= allowed, f"{sorted(names - allowed)} in {expr}"


def test_label_names_are_the_contracts():
    """Matchers on the app's metrics use only the labels of monitoring/README.md's table
    plus the scrape targets' labels (a typo like status_code would silently match nothing)."""
    contract = pn.contract_labels()
    assert contract["visits_http_requests_total"] == {"route", "method", "status"}
    assert contract["visits_backend_requests_total"] == {"backend", "outcome"}
    checked = 0
    for expr in rule_exprs() + dashboard_exprs():
        for metric, used in pn.selector_labels(expr):
            if metric in contract:
                checked += 1
                extra = used - contract[metric] - pn.TARGET_LABELS
                assert not extra, f"{metric}: labels {sorted(extra)} are not in the contract ({expr})"
    assert checked >= 10
    assert pn.selector_labels('rate(visits_http_requests_total{job="visits", status_code=~"5.."}[5m])') == \
        [("visits_http_requests_total", {"job", "status_code"})]


def test_metric_name_check_can_fail():
    assert pn.metric_names('sum by (le) (rate(visits_http_request_total{route="/"}[5m])) > on (job) up') == \
        {"visits_http_request_total", "up"}
    assert not pn.metric_names('histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))') <= pn.allowed_metrics()


def test_dashboard(tmp_path):
    """The dashboard parses, has the panels the operations need, and every query is valid
    PromQL (checked by promtool as recording rules, with Grafana's $__rate_interval as 5m)."""
    d = dashboard()
    assert d["uid"] == "wasm-visits" and d["templating"]["list"][0]["type"] == "datasource"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert p["title"] and p["targets"], p
        assert p["datasource"]["uid"] == "${datasource}"
    exprs = dashboard_exprs()
    joined = "\n".join(exprs)
    for needle in ("visits_http_requests_total", "sum by (status)", "histogram_quantile(0.5,",
                   "histogram_quantile(0.99,", 'visits_backend_requests_total{job="visits", outcome="error"}',
                   "kube_deployment_status_replicas_available", "runner_admission_waiting",
                   "nginx_ingress_controller_requests"):
        assert needle in joined, needle
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e.replace("$__rate_interval", "5m")} for i, e in enumerate(exprs)]}]}
    f = tmp_path / "dashboard-rules.yml"
    f.write_text(yaml.safe_dump(rules))
    r = run(promtool(), "check", "rules", str(f))
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------- Kubernetes objects

def _load_gen():
    spec = importlib.util.spec_from_file_location("gen_prometheusrule", kc.REPO / "scripts" / "gen-prometheusrule.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_copies_are_current():
    r = run("python3", str(kc.REPO / "scripts" / "gen-prometheusrule.py"), "--check")
    assert r.returncode == 0, r.stderr


def test_generator_detects_a_stale_copy(tmp_path):
    gen = _load_gen()
    for rel in ("monitoring/alerts.yml", "k8s/components/monitoring/prometheusrule.yaml",
                "k8s/helm/wasm-visits/monitoring/alerts.yml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(kc.REPO / rel, tmp_path / rel)
    gen.REPO, gen.SOURCE = tmp_path, tmp_path / "monitoring" / "alerts.yml"
    gen.sys.argv = ["gen", "--check"]
    assert gen.main() == 0
    gen.SOURCE.write_text(gen.SOURCE.read_text().replace("for: 2m", "for: 3m", 1))
    assert gen.main() == 1


MONITORED_OVERLAY = """
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: wasm-visits
resources: [REPO/k8s/base]
components: [REPO/k8s/components/EDITION, REPO/k8s/components/mongodb-standalone, REPO/k8s/components/monitoring EXTRA]
"""


@functools.lru_cache(maxsize=None)
def _render_monitored_text(edition):
    with tempfile.TemporaryDirectory() as tmp:
        rel = os.path.relpath(kc.REPO, tmp)
        extra = f", {rel}/k8s/components/monitoring-native" if edition == "container" else ""
        pathlib.Path(tmp, "kustomization.yaml").write_text(
            MONITORED_OVERLAY.replace("EDITION", edition).replace(" EXTRA", extra).replace("REPO", rel))
        out = run(kc.kubectl(), "kustomize", tmp)
    assert out.returncode == 0, out.stderr
    return out.stdout


def render_monitored(_tmp_path, edition):
    """An overlay outside the repository with the monitoring components (rendered once per edition)."""
    return kc.load_docs(_render_monitored_text(edition))


@pytest.mark.parametrize("edition", ["wasm", "container"])
def test_kustomize_monitoring_components(tmp_path, edition):
    docs = render_monitored(tmp_path, edition)
    problems = [f"{kc.key(d)}: {p}" for d in docs for p in kc.validate_object(d)]
    problems += kc.selector_problems(docs) + kc.policy_problems(docs) + kc.availability_problems(docs)
    assert not problems, "\n".join(problems)
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["metadata"]["namespace"] == "wasm-visits"
    assert rule["spec"]["groups"] == alert_groups()
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    if edition == "wasm":
        assert not monitors  # nothing to scrape: containerd-shim-spin serves only the app
        return
    (sm,) = monitors
    check_service_monitor(sm, docs)


def check_service_monitor(sm: dict, docs: list[dict]):
    """The ServiceMonitor finds webdb and webnodb's Services, their port `http` leads to the
    container port visits-native serves /metrics on, the relabelled job is the one the app
    rules select, and a NetworkPolicy lets Prometheus reach that port."""
    services = [d for d in docs if d["kind"] == "Service"
                and kc.selector_matches(sm["spec"]["selector"], d["metadata"].get("labels") or {})]
    assert {s["metadata"]["name"] for s in services} == {"webdb", "webnodb"}
    (ep,) = sm["spec"]["endpoints"]
    assert ep["path"] == "/metrics"
    for s in services:
        port = next(p for p in s["spec"]["ports"] if p.get("name") == ep["port"])
        dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == s["metadata"]["name"])
        cports = {p["name"]: p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert cports[port["targetPort"]] == 8080
    relabel = {r["targetLabel"]: r for r in ep["relabelings"]}
    assert relabel["job"]["replacement"] == "visits"
    assert all('job="visits"' in r["expr"] for r in alert_groups()[0]["rules"])
    assert relabel["replica"]["sourceLabels"] == ["__meta_kubernetes_pod_name"]
    assert relabel["edition"]["replacement"] == "native"
    pol = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "allow-prometheus-to-web")
    assert [p["port"] for p in pol["spec"]["ingress"][0]["ports"]] == [8080]


helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")


def helm_render(values):
    with helm.Chart.load(str(kc.REPO / "k8s/helm/wasm-visits")) as chart:
        out = chart.render(values, name="visits", namespace="wasm-visits")
    return [d for p, t in sorted(out.items()) if p.endswith(".yaml") for d in yaml.safe_load_all(t) if d]


@pytest.mark.parametrize("edition", ["wasm", "container"])
def test_helm_monitoring(tmp_path, edition):
    docs = helm_render({"edition": edition, "monitoring": {"enabled": True, "labels": {"release": "kps"}}})
    problems = [f"{kc.key(d)}: {p}" for d in docs for p in kc.validate_object(d)]
    problems += kc.selector_problems(docs) + kc.policy_problems(docs) + kc.availability_problems(docs)
    assert not problems, "\n".join(problems)
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["spec"]["groups"] == alert_groups()
    assert rule["metadata"]["labels"]["release"] == "kps"
    k = render_monitored(tmp_path, edition)
    same = lambda ds, kind: {d["metadata"]["name"]: d["spec"] for d in ds if d["kind"] == kind}
    for kind in ("PrometheusRule", "ServiceMonitor", "NetworkPolicy"):
        assert same(docs, kind) == same(k, kind), kind
    if edition == "container":
        check_service_monitor(next(d for d in docs if d["kind"] == "ServiceMonitor"), docs)
    assert not [d for d in helm_render({"edition": edition}) if d["apiVersion"].startswith("monitoring.coreos.com")]


def test_crd_validation_rejects_broken_monitoring_objects(tmp_path):
    docs = render_monitored(tmp_path, "container")
    rule = copy.deepcopy(next(d for d in docs if d["kind"] == "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "two minutes"   # not a Prometheus duration
    rule["spec"]["groups"][1]["rules"][0]["severity"] = "critical"  # belongs under labels
    problems = kc.validate_object(rule)
    assert any("two minutes" in p for p in problems) and any("severity" in p for p in problems), problems
    sm = copy.deepcopy(next(d for d in docs if d["kind"] == "ServiceMonitor"))
    sm["spec"]["endpoints"][0]["scrapeInterval"] = "15s"  # the field is `interval`
    assert any("scrapeInterval" in p for p in kc.validate_object(sm))
