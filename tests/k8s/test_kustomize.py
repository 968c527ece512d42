"""Every kustomize overlay renders, validates (Kubernetes 1.32 strict + SpinKube CRDs), and
follows the project's policies."""
import pytest

import k8s_checks as kc

RENDERS = ["runtime-class", "runtime-class/runtime-class-manager", "runtime-class/executor",
           "k8s/cluster/wasm-pod-defaults"] + [f"k8s/overlays/{o}" for o in kc.OVERLAYS]


@pytest.mark.parametrize("path", RENDERS)
def test_renders_and_validates(path):
    docs = kc.kustomize(path)
    assert docs, f"{path} rendered nothing"
    problems = [f"{kc.key(d)}: {p}" for d in docs for p in kc.validate_object(d)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", kc.OVERLAYS)
def test_policies(overlay):
    docs = kc.kustomize(f"k8s/overlays/{overlay}")
    problems = kc.policy_problems(docs)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", kc.OVERLAYS)
def test_selectors_match(overlay):
    docs = kc.kustomize(f"k8s/overlays/{overlay}")
    problems = kc.selector_problems(docs)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", kc.OVERLAYS)
def test_availability(overlay):
    """PDBs, spreading and rolling-update settings (kc.availability_problems)."""
    docs = kc.kustomize(f"k8s/overlays/{overlay}")
    problems = kc.availability_problems(docs)
    assert not problems, "\n".join(problems)
    budgets = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == {"webdb", "webnodb", "redis", "mongo"}
    assert budgets["webdb"]["maxUnavailable"] == budgets["webnodb"]["maxUnavailable"] == 1
    assert budgets["redis"]["maxUnavailable"] == 0
    if overlay.endswith("replicaset"):
        assert budgets["mongo"] == {"minAvailable": 2, "unhealthyPodEvictionPolicy": "AlwaysAllow",
                                    "selector": {"matchLabels": {"app.kubernetes.io/part-of": "wasm-visits",
                                                                 "app.kubernetes.io/name": "mongodb"}}}
    else:
        assert budgets["mongo"]["maxUnavailable"] == 0


def test_wasm_pod_defaults_policy():
    """The optional MutatingAdmissionPolicy for SpinApp pods: cluster-scoped, bound to
    itself, and its objectSelector picks exactly the Wasm web pods (not the container
    edition's, which say all of it in their Deployments). Its CEL is not evaluated
    here: that needs an API server with the alpha API (k8s/README.md)."""
    docs = kc.kustomize("k8s/cluster/wasm-pod-defaults")
    by_kind = {d["kind"]: d for d in docs}
    policy, binding = by_kind["MutatingAdmissionPolicy"], by_kind["MutatingAdmissionPolicyBinding"]
    assert all("namespace" not in d["metadata"] for d in docs), "cluster-scoped objects"
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert policy["spec"]["failurePolicy"] == "Ignore"
    expr = policy["spec"]["mutations"][0]["applyConfiguration"]["expression"]
    for needle in ('"core.spinkube.dev/app-name"', '"kubernetes.io/hostname"', "preStop", "seconds: 5"):
        assert needle in expr, needle
    selector = binding["spec"]["matchResources"]["objectSelector"]
    for overlay in kc.OVERLAYS:
        pods = kc.pod_templates(kc.kustomize(f"k8s/overlays/{overlay}"))
        hit = {p["name"] for p in pods if kc.selector_matches(selector, p["labels"])}
        assert hit == ({"webdb", "webnodb"} if overlay.startswith("wasm") else set()), (overlay, hit)


@pytest.mark.parametrize("overlay", kc.OVERLAYS)
def test_everything_in_namespace(overlay):
    docs = kc.kustomize(f"k8s/overlays/{overlay}")
    kinds = {d["kind"] for d in docs}
    assert "Namespace" in kinds
    for d in docs:
        if d["kind"] not in ("Namespace", "RuntimeClass"):
            assert d["metadata"].get("namespace") == "wasm-visits", kc.key(d)


@pytest.mark.parametrize("mode", ["", "-replicaset"])
def test_shared_objects_identical_in_both_editions(mode):
    wasm = kc.shared_objects(kc.kustomize(f"k8s/overlays/wasm{mode}"))
    container = kc.shared_objects(kc.kustomize(f"k8s/overlays/container{mode}"))
    assert {k[1] for k in wasm} == set(kc.SHARED_KINDS)
    assert wasm == container


@pytest.mark.parametrize("overlay", kc.OVERLAYS)
def test_web_workloads(overlay):
    docs = kc.kustomize(f"k8s/overlays/{overlay}")
    wasm = overlay.startswith("wasm")
    web = kc.web_pods(docs)
    assert set(web) == {"webdb", "webnodb"}
    for name, pod in web.items():
        assert pod["kind"] == ("SpinApp" if wasm else "Deployment")
        assert pod["labels"]["app.kubernetes.io/name"] == name
        owner = pod["owner"]["spec"]
        if wasm:
            assert owner["executor"] == "containerd-shim-spin"
            assert owner["enableAutoscaling"] is True and "replicas" not in owner
            assert owner["resources"] == {"requests": {"cpu": "100m", "memory": "100Mi"},
                                          "limits": {"cpu": "200m", "memory": "200Mi"}}
            assert owner["checks"]["liveness"]["httpGet"]["path"] == "/.well-known/spin/health"
            assert owner["checks"]["readiness"]["httpGet"]["path"] == "/healthz"
        else:
            c = owner["template"]["spec"]["containers"][0]
            assert c["resources"] == {"requests": {"cpu": "100m", "memory": "100Mi"},
                                      "limits": {"cpu": "200m", "memory": "200Mi"}}
            assert c["livenessProbe"]["httpGet"]["path"] == "/.well-known/spin/health"
            assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["ports"][0]["containerPort"] == 8080
        env = kc.web_env(docs, name)
        assert env["hostname"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["records_backend"] == ("mongodb" if name == "webdb" else "off")
        for secret in ("mongo_password", "mongo_username"):
            if secret in env:
                assert "secretKeyRef" in env[secret], secret
    # the MongoDB component appended webdb's three seeds (component order in the overlay)
    env = kc.web_env(docs, "webdb")
    seeds = [env.get(k) for k in ("mongo_address", "mongo_address2", "mongo_address3")]
    assert all(seeds), f"webdb lacks MongoDB seeds: {seeds}"
    # IP literals in both editions: the Wasm sandbox has no DNS and the native binary parses
    # mongo_address* as IP:port too; the kubelet expands the Service env vars
    expected = (["$(MONGO_0_SERVICE_HOST):27017", "$(MONGO_1_SERVICE_HOST):27017", "$(MONGO_2_SERVICE_HOST):27017"]
                if overlay.endswith("replicaset") else ["$(MONGODB_SERVICE_HOST):27017"] * 3)
    assert seeds == expected
    if not wasm:
        for d in docs:
            if d["kind"] == "Deployment":
                assert d["spec"]["template"]["spec"].get("enableServiceLinks", True), "seeds need service env vars"
    # every Service a seed names exists in the render (env var expansion needs it)
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    for s in seeds:
        if s.startswith("$("):
            svc = s[2:s.index("_SERVICE_HOST")].lower().replace("_", "-")
            assert svc in services, s


def test_replicaset_layout():
    docs = kc.kustomize("k8s/overlays/wasm-replicaset")
    sts = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "mongo")
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == "mongo"
    assert "--replSet" in sts["spec"]["template"]["spec"]["containers"][0]["args"]
    svcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert svcs["mongo"]["spec"]["clusterIP"] == "None"
    for i in range(3):
        assert svcs[f"mongo-{i}"]["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == f"mongo-{i}"
    assert any(d["kind"] == "Job" and d["metadata"]["name"] == "mongo-rs-init" for d in docs)
    assert "mongodb" not in svcs


def test_standalone_layout():
    docs = kc.kustomize("k8s/overlays/container")
    sts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}
    assert sts["mongo"]["spec"]["template"]["spec"]["containers"][0]["image"].startswith("mongo:7.0")
    for name in ("mongo", "redis"):
        vct = sts[name]["spec"]["volumeClaimTemplates"]
        assert vct[0]["spec"]["resources"]["requests"]["storage"] == "100Mi"
    svcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert svcs["mongo"]["spec"]["clusterIP"] == "None"
    assert svcs["mongodb"]["spec"].get("clusterIP") != "None"
    assert "redis" in svcs
    assert svcs["webdb"]["spec"]["ports"][0]["port"] == 80


def test_secrets_only_in_secret():
    for overlay in kc.OVERLAYS:
        docs = kc.kustomize(f"k8s/overlays/{overlay}")
        secret = next(d for d in docs if d["kind"] == "Secret")
        assert "mongo_password" in secret["stringData"]
        for d in docs:
            if d["kind"] == "ConfigMap":
                assert not any("password" in k for k in d.get("data", {})), d["metadata"]["name"]


def test_runtime_class_and_executor():
    (rc,) = kc.kustomize("runtime-class")
    assert rc["kind"] == "RuntimeClass" and rc["metadata"]["name"] == "wasmtime-spin-v2"
    assert rc["handler"] == "spin"
    (rcm,) = kc.kustomize("runtime-class/runtime-class-manager")
    assert rcm["handler"] == "spin-v2" and rcm["scheduling"]["nodeSelector"] == {"spin": "true"}
    (ex,) = kc.kustomize("runtime-class/executor")
    assert ex["spec"] == {"createDeployment": True,
                          "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2", "installDefaultCACerts": True}}
    for overlay in ("wasm", "wasm-replicaset"):
        assert any(d["kind"] == "SpinAppExecutor" and d["metadata"]["namespace"] == "wasm-visits"
                   for d in kc.kustomize(f"k8s/overlays/{overlay}"))


def _render_overlay(tmp_path, body: str) -> list[dict]:
    """Render an overlay written outside the repository (as a user would, see
    k8s/README.md) that refers to the repository's bases by relative path."""
    import os
    import subprocess
    rel = os.path.relpath(kc.REPO, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(body.replace("REPO", rel))
    out = subprocess.run([kc.kubectl(), "kustomize", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return kc.load_docs(out.stdout)


# The "your own overlay" example of k8s/README.md: another domain, TLS, an image tag.
CUSTOM_OVERLAY = """
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: wasm-visits
resources:
  - REPO/k8s/base
components:
  - REPO/k8s/components/wasm
  - REPO/k8s/components/mongodb-standalone
  - REPO/k8s/components/tls
images:
  - name: ghcr.io/wasm-visits/wasm-visits
    newTag: v2
patches:
  - target: {kind: Ingress, name: wasm-visits}
    patch: |-
      - {op: replace, path: /spec/rules/0/host, value: webdb.example.org}
      - {op: replace, path: /spec/rules/1/host, value: webnodb.example.org}
      - {op: replace, path: /spec/tls/0/hosts, value: [webdb.example.org, webnodb.example.org]}
  - target: {kind: ConfigMap, name: wasm-visits-config}
    patch: |-
      - {op: replace, path: /data/version, value: v2}
"""


def test_custom_overlay_with_tls(tmp_path):
    docs = _render_overlay(tmp_path, CUSTOM_OVERLAY)
    problems = [p for d in docs for p in kc.validate_object(d)] + kc.policy_problems(docs) + kc.selector_problems(docs)
    assert not problems, "\n".join(problems)
    ing = next(d for d in docs if d["kind"] == "Ingress")
    assert ing["metadata"]["annotations"]["cert-manager.io/issuer"] == "wasm-visits"
    assert [r["host"] for r in ing["spec"]["rules"]] == ing["spec"]["tls"][0]["hosts"] == \
        ["webdb.example.org", "webnodb.example.org"]
    issuer = next(d for d in docs if d["kind"] == "Issuer")
    assert issuer["metadata"]["namespace"] == "wasm-visits"
    assert {d["spec"]["image"] for d in docs if d["kind"] == "SpinApp"} == {"ghcr.io/wasm-visits/wasm-visits:v2"}


def test_component_order_matters(tmp_path):
    """Listing the MongoDB component before the edition leaves webdb without seeds:
    the render still succeeds, so the seed check in test_web_workloads is what catches it."""
    docs = _render_overlay(tmp_path, """
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: wasm-visits
resources: [REPO/k8s/base]
components: [REPO/k8s/components/mongodb-standalone, REPO/k8s/components/wasm]
""")
    assert "mongo_address" not in kc.web_env(docs, "webdb")


def test_variables_are_the_apps():
    """Every setting the workloads pass is one spin.toml declares (a typo would be ignored
    silently by Spin); the native edition passes the same names in UPPERCASE."""
    import tomllib
    manifest = kc.REPO / "spin.toml"
    if not manifest.exists():
        pytest.skip("spin.toml does not exist yet at the repository root")
    declared = set(tomllib.loads(manifest.read_text())["variables"])
    native_only = {"listen_address", "quiet"}
    for overlay in kc.OVERLAYS:
        docs = kc.kustomize(f"k8s/overlays/{overlay}")
        for name in ("webdb", "webnodb"):
            used = set(kc.web_env(docs, name))
            unknown = used - declared - (native_only if overlay.startswith("container") else set())
            assert not unknown, f"{overlay} {name}: {sorted(unknown)} not in spin.toml [variables]"
            if overlay.startswith("wasm"):
                assert all(v == v.lower() for v in used)
