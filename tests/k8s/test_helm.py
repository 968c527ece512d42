"""k8s/helm/wasm-visits renders (Helm v4 SDK through helm-python-sdk, offline), validates,
follows the same policies as the kustomize overlays, and says the same things."""
import pytest
import yaml

import k8s_checks as kc

helm = pytest.importorskip(
    "helm_python", reason="helm-python-sdk is not installed (pip install -r tests/k8s/requirements.txt)")

CHART = kc.REPO / "k8s" / "helm" / "wasm-visits"
COMBOS = [("wasm", "standalone"), ("container", "standalone"), ("wasm", "replicaset"), ("container", "replicaset")]
OVERLAY = {("wasm", "standalone"): "wasm", ("container", "standalone"): "container",
           ("wasm", "replicaset"): "wasm-replicaset", ("container", "replicaset"): "container-replicaset"}


def render(values=None, namespace="wasm-visits"):
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values or {}, name="visits", namespace=namespace)
    return [d for path, text in sorted(out.items()) if path.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d]


def combo(edition, mode, **extra):
    return render({"edition": edition, "mongo": {"mode": mode}, **extra})


def hooks(docs):
    return {d["metadata"]["name"]: d["metadata"].get("annotations", {}).get("helm.sh/hook")
            for d in docs if "helm.sh/hook" in d["metadata"].get("annotations", {})}


def test_lint():
    result = helm.lint(str(CHART), strict=True)
    assert result["errors"] == [], result


@pytest.mark.parametrize("edition,mode", COMBOS)
def test_render_validates(edition, mode):
    docs = combo(edition, mode)
    problems = [f"{kc.key(d)}: {p}" for d in docs for p in kc.validate_object(d)]
    assert not problems, "\n".join(problems)
    assert all(d["metadata"].get("namespace") == "wasm-visits" for d in docs)


@pytest.mark.parametrize("edition,mode", COMBOS)
def test_policies_and_selectors(edition, mode):
    docs = combo(edition, mode)
    problems = kc.policy_problems(docs) + kc.selector_problems(docs)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("edition,mode", COMBOS)
def test_availability_same_as_kustomize(edition, mode):
    """Budgets, spreading and rollout settings pass the same checks and equal the kustomize ones."""
    h = combo(edition, mode)
    k = kc.kustomize(f"k8s/overlays/{OVERLAY[(edition, mode)]}")
    problems = kc.availability_problems(h)
    assert not problems, "\n".join(problems)

    def rollout(docs):
        out = {}
        for d in docs:
            if d["kind"] in ("Deployment", "StatefulSet"):
                pod = d["spec"]["template"]["spec"]
                out[(d["kind"], d["metadata"]["name"])] = (
                    d["spec"].get("strategy"), d["spec"].get("minReadySeconds"),
                    pod.get("terminationGracePeriodSeconds"), pod.get("topologySpreadConstraints"),
                    [c.get("lifecycle") for c in pod["containers"]])
        return out
    assert rollout(h) == rollout(k)


def test_budgets_can_be_disabled():
    docs = render({"podDisruptionBudgets": {"enabled": False}})
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert any("0 PodDisruptionBudgets" in p for p in kc.availability_problems(docs))


@pytest.mark.parametrize("mode", ["standalone", "replicaset"])
def test_shared_objects_identical_in_both_editions(mode):
    wasm = kc.shared_objects(combo("wasm", mode))
    container = kc.shared_objects(combo("container", mode))
    assert {k[1] for k in wasm} == set(kc.SHARED_KINDS)
    assert wasm == container


@pytest.mark.parametrize("edition,mode", COMBOS)
def test_same_stack_as_kustomize(edition, mode):
    """Helm and kustomize deploy the same thing: shared objects' specs, web settings,
    MongoDB scripts and settings."""
    h = combo(edition, mode)
    k = kc.kustomize(f"k8s/overlays/{OVERLAY[(edition, mode)]}")
    spec = lambda docs: {(d["kind"], d["metadata"]["name"]): d["spec"] for d in docs if d["kind"] in kc.SHARED_KINDS}
    assert spec(h) == spec(k)
    for app in ("webdb", "webnodb"):
        assert kc.web_env(h, app) == kc.web_env(k, app), app
    data = lambda docs, n: next(d["data"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == n)
    assert data(h, "mongodb-scripts") == data(k, "mongodb-scripts")
    assert data(h, "wasm-visits-config") == data(k, "wasm-visits-config")
    sts = lambda docs: {d["metadata"]["name"]: d["spec"]["replicas"] for d in docs if d["kind"] == "StatefulSet"}
    assert sts(h) == sts(k)
    svcs = lambda docs: {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    assert svcs(h) == svcs(k)


def test_hooks():
    docs = combo("wasm", "replicaset")
    assert hooks(docs) == {"wasm-visits-config-check": "pre-install,pre-upgrade",
                           "wasm-visits-mongo-backup": "pre-upgrade",
                           "mongo-rs-init": "post-install,post-upgrade"}
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    backup = next(d for d in docs if d["metadata"]["name"] == "wasm-visits-mongo-backup" and d["kind"] == "Job")
    c = backup["spec"]["template"]["spec"]["containers"][0]
    assert "mongodump" in c["command"][-1]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert "replicaSet=rs0" in env["MONGO_URI"]
    assert backup["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert hooks(combo("container", "standalone")) == {"wasm-visits-config-check": "pre-install,pre-upgrade",
                                                        "wasm-visits-mongo-backup": "pre-upgrade"}


def test_values_switches():
    docs = render({"edition": "wasm", "domain": "example.org", "version": "v2", "replicas": 4,
                   "autoscaling": {"enabled": False}, "ingress": {"className": "nginx", "tls": {"enabled": True}}})
    apps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "SpinApp"}
    assert apps["webdb"]["spec"]["replicas"] == 4 and "enableAutoscaling" not in apps["webdb"]["spec"]
    assert apps["webdb"]["spec"]["image"] == "ghcr.io/wasm-visits/wasm-visits:v2"
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    ing = next(d for d in docs if d["kind"] == "Ingress")
    assert [r["host"] for r in ing["spec"]["rules"]] == ["webdb.example.org", "webnodb.example.org"]
    assert ing["spec"]["tls"][0]["hosts"] == ["webdb.example.org", "webnodb.example.org"]
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert any(d["kind"] == "Issuer" for d in docs)
    problems = [p for d in docs for p in kc.validate_object(d)] + kc.policy_problems(docs) + kc.selector_problems(docs)
    assert not problems, problems
    docs = render({"edition": "container", "mongo": {"auth": {"existingSecret": "mine"}}})
    assert not [d for d in docs if d["kind"] == "Secret"]
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "webdb")
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
            if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs == {"mine"}


@pytest.mark.parametrize("values,message", [
    ({"edition": "lambda"}, "edition"),
    ({"mongo": {"mode": "sharded"}}, "mode"),
    ({"domain": "Not_A_Domain"}, "domain"),
    ({"replicas": 12}, "maxReplicas"),
    ({"mongo": {"mode": "replicaset", "auth": {"keyfile": "no spaces allowed"}}}, "keyfile"),
    ({"mongo": {"auth": {"password": ""}}}, "mongo.auth"),
    ({"editon": "wasm"}, "editon"),
    ({"rollout": {"preStopSleepSeconds": 25}}, "terminationGracePeriodSeconds"),
])
def test_invalid_values_fail(values, message):
    with pytest.raises(helm.HelmError) as err:
        render(values)
    assert message in str(err.value)


@pytest.mark.parametrize("values,ok,says", [
    ({}, True, "WARNING: the example MongoDB passwords"),
    ({"edition": "container", "mongo": {"mode": "replicaset"}}, True, "configuration OK"),
    ({"hooks": {"configCheck": {"rejectExamplePasswords": True}}}, False, "example MongoDB passwords are still in use"),
    ({"hooks": {"configCheck": {"rejectExamplePasswords": True}},
      "mongo": {"auth": {"password": "s3cret-app", "rootPassword": "s3cret-root"}}}, True, "configuration OK"),
])
def test_config_check_hook_script(values, ok, says):
    """Run the pre-install/pre-upgrade check's shell script with the env the Job gets."""
    import os
    import shutil
    import subprocess
    sh = shutil.which("sh")
    docs = render(values)
    job = next(d for d in docs if d["metadata"]["name"] == "wasm-visits-config-check")
    ctr = job["spec"]["template"]["spec"]["containers"][0]
    assert ctr["command"][:2] == ["sh", "-c"]
    # the kubelet turns $$( into a literal $( (and expands nothing else: no Service env var is named here)
    env = {e["name"]: e["value"].replace("$$(", "$(") for e in ctr["env"]}
    r = subprocess.run([sh, "-c", ctr["command"][2]], env={"PATH": os.environ["PATH"], **env},
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode == 0) == ok, r.stdout + r.stderr
    assert says in r.stdout + r.stderr
