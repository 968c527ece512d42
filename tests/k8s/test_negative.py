"""The checks can fail: deliberately broken objects must be rejected by the same code
that passes the real manifests."""
import copy

import pytest

import k8s_checks as kc


def _first(docs, kind, name=None):
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


@pytest.fixture(scope="module")
def wasm_docs():
    return kc.kustomize("k8s/overlays/wasm")


@pytest.fixture(scope="module")
def container_docs():
    return kc.kustomize("k8s/overlays/container")


def test_spinapp_unknown_field_rejected(wasm_docs):
    app = copy.deepcopy(_first(wasm_docs, "SpinApp", "webdb"))
    assert kc.validate_object(app) == []
    app["spec"]["replicaCount"] = 3  # not a SpinApp field: strict validation must refuse it
    problems = kc.validate_object(app)
    assert any("replicaCount" in p for p in problems), problems


def test_spinapp_nested_unknown_field_rejected(wasm_docs):
    app = copy.deepcopy(_first(wasm_docs, "SpinApp", "webdb"))
    app["spec"]["checks"]["liveness"]["httpGet"]["port"] = 80  # SpinApp probes have no port
    assert any("port" in p for p in kc.validate_object(app))


def test_spinapp_wrong_type_and_missing_required_rejected(wasm_docs):
    app = copy.deepcopy(_first(wasm_docs, "SpinApp", "webnodb"))
    app["spec"]["enableAutoscaling"] = "yes"
    del app["spec"]["executor"]
    problems = kc.validate_object(app)
    assert any("executor" in p for p in problems) and any("yes" in p for p in problems), problems


def test_spinapp_replicas_with_autoscaling_rejected(wasm_docs):
    app = copy.deepcopy(_first(wasm_docs, "SpinApp", "webdb"))
    app["spec"]["replicas"] = 3
    assert any("enableAutoscaling" in p for p in kc.validate_object(app))


def test_executor_unknown_field_rejected(wasm_docs):
    ex = copy.deepcopy(_first(wasm_docs, "SpinAppExecutor"))
    ex["spec"]["deploymentConfig"]["runtimeClass"] = "typo"
    assert any("runtimeClass" in p for p in kc.validate_object(ex))


def test_builtin_unknown_field_rejected(container_docs):
    dep = copy.deepcopy(_first(container_docs, "Deployment", "webdb"))
    assert kc.validate_object(dep) == []
    dep["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert kc.validate_object(dep), "kubernetes-validate --strict accepted an unknown field"


def test_policy_rejects_bad_deployment(container_docs):
    docs = copy.deepcopy(container_docs)
    dep = _first(docs, "Deployment", "webnodb")
    dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = 1
    c = dep["spec"]["template"]["spec"]["containers"][0]
    del c["readinessProbe"]
    del c["resources"]["limits"]
    c["securityContext"]["readOnlyRootFilesystem"] = False
    dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = False
    problems = "\n".join(kc.policy_problems(docs))
    for expected in ("maxUnavailable", "readinessProbe", "limits.cpu", "readOnlyRootFilesystem", "runAsNonRoot"):
        assert expected in problems, expected


def test_policy_rejects_spinapp_without_checks(wasm_docs):
    docs = copy.deepcopy(wasm_docs)
    del _first(docs, "SpinApp", "webdb")["spec"]["checks"]["readiness"]
    assert any("checks.readiness" in p for p in kc.policy_problems(docs))


def test_policy_rejects_password_in_configmap(wasm_docs):
    docs = copy.deepcopy(wasm_docs)
    _first(docs, "ConfigMap", "wasm-visits-config")["data"]["mongo_password"] = "x"
    assert any("mongo_password" in p for p in kc.policy_problems(docs))


def test_selectors_reject_mismatch(wasm_docs, container_docs):
    docs = copy.deepcopy(container_docs)
    _first(docs, "Service", "webdb")["spec"]["selector"]["app.kubernetes.io/name"] = "web-db"
    assert any("Service/webdb" in p for p in kc.selector_problems(docs))
    docs = copy.deepcopy(wasm_docs)
    # without the podLabels the shared NetworkPolicies select nothing of the Wasm edition
    for app in (d for d in docs if d["kind"] == "SpinApp"):
        app["spec"]["podLabels"] = {}
    problems = kc.selector_problems(docs)
    assert any("allow-ingress-controller-to-web" in p for p in problems), problems


def test_hpa_fights_replicas(wasm_docs, container_docs):
    docs = copy.deepcopy(wasm_docs)
    app = _first(docs, "SpinApp", "webdb")
    app["spec"]["enableAutoscaling"] = False
    app["spec"]["replicas"] = 3
    assert any("HorizontalPodAutoscaler/webdb" in p for p in kc.selector_problems(docs))
    docs = copy.deepcopy(container_docs)
    _first(docs, "Deployment", "webdb")["spec"]["replicas"] = 3
    assert any("fights the HPA" in p for p in kc.selector_problems(docs))
    _first(docs, "HorizontalPodAutoscaler", "webnodb")["spec"]["scaleTargetRef"]["name"] = "nope"
    assert any("names no Deployment" in p for p in kc.selector_problems(docs))


def test_availability_rejects_bad_budgets(container_docs):
    docs = copy.deepcopy(container_docs)
    assert kc.availability_problems(docs) == []
    _first(docs, "PodDisruptionBudget", "webdb")["spec"]["maxUnavailable"] = 0       # 3 pods, no eviction ever
    _first(docs, "PodDisruptionBudget", "redis")["spec"]["maxUnavailable"] = 1       # 1 pod: protects nothing
    del _first(docs, "PodDisruptionBudget", "mongo")["spec"]["unhealthyPodEvictionPolicy"]
    problems = "\n".join(kc.availability_problems(docs))
    assert "PodDisruptionBudget/webdb: allows no eviction" in problems, problems
    assert "PodDisruptionBudget/redis" in problems and "protects nothing" in problems
    assert "PodDisruptionBudget/mongo: unhealthyPodEvictionPolicy" in problems


def test_availability_rejects_missing_budget_and_overlap(wasm_docs):
    docs = [d for d in copy.deepcopy(wasm_docs) if d["metadata"]["name"] != "webnodb" or d["kind"] != "PodDisruptionBudget"]
    assert any("SpinApp/webnodb: 0 PodDisruptionBudgets" in p for p in kc.availability_problems(docs))
    docs = copy.deepcopy(wasm_docs)
    # a budget selecting every web pod spans two workloads
    del _first(docs, "PodDisruptionBudget", "webdb")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
    assert any("PodDisruptionBudget/webdb: selector must match the pods of exactly one workload" in p
               for p in kc.selector_problems(docs))


def test_availability_rejects_bad_rollout_and_spread(container_docs):
    docs = copy.deepcopy(container_docs)
    dep = _first(docs, "Deployment", "webdb")
    del dep["spec"]["minReadySeconds"]
    pod = dep["spec"]["template"]["spec"]
    pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] = 30
    pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] = "webnodb"
    del _first(docs, "Deployment", "webnodb")["spec"]["template"]["spec"]["topologySpreadConstraints"]
    problems = "\n".join(kc.availability_problems(docs))
    for expected in ("Deployment/webdb: no minReadySeconds", "preStop sleep 30s >= grace period 30s",
                     "Deployment/webdb: the kubernetes.io/hostname spread constraint's labelSelector",
                     "Deployment/webnodb: 3 pods but no topologySpreadConstraint"):
        assert expected in problems, expected
