"""Helpers for the offline Kubernetes checks: rendering, schema validation, policies.

Every check returns a list of problems (strings) instead of asserting, so the
negative tests can feed deliberately broken objects and assert that the very
same checks reject them.
"""
from __future__ import annotations

import copy
import functools
import os
import pathlib
import re
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
K8S_VERSION = "1.32.0"
OVERLAYS = ["wasm", "container", "wasm-replicaset", "container-replicaset"]
CRD_GROUP = "core.spinkube.dev"
# Labels both editions' web pods carry, so one Ingress/HPA/NetworkPolicy file serves both.
WEB_LABELS = {"app.kubernetes.io/part-of": "wasm-visits", "app.kubernetes.io/component": "web"}
SHARED_KINDS = ("Ingress", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet")


def shared_dir() -> pathlib.Path:
    """shared/ lives beside the repository (CI clones it there); WASM_VISITS_SHARED overrides."""
    env = os.environ.get("WASM_VISITS_SHARED")
    return pathlib.Path(env) if env else (REPO / ".." / "shared").resolve()


# ---------------------------------------------------------------- rendering

def kubectl() -> str:
    exe = shutil.which("kubectl")
    if not exe:
        raise RuntimeError("kubectl not found: it renders the kustomizations (kubectl kustomize)")
    return exe


@functools.lru_cache(maxsize=None)
def kustomize_text(path: str) -> str:
    out = subprocess.run([kubectl(), "kustomize", str(REPO / path)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return out.stdout


def load_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def kustomize(path: str) -> list[dict]:
    return copy.deepcopy(load_docs(kustomize_text(path)))


def key(obj: dict) -> tuple:
    md = obj.get("metadata", {})
    return (obj.get("apiVersion"), obj.get("kind"), md.get("namespace"), md.get("name"))


# ---------------------------------------------------------------- schema validation

def _strictify(schema):
    """Reject unknown fields the way the API server's strict field validation does:
    additionalProperties: false wherever a schema lists `properties`, unless it
    preserves unknown fields or already says what extra properties may be."""
    if isinstance(schema, dict):
        out = {k: _strictify(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strictify(v) for v in schema]
    return schema


@functools.lru_cache(maxsize=None)
def crd_schemas() -> dict:
    """{(apiVersion, kind): strict JSON schema} from shared/crds/*.yaml."""
    crds = shared_dir() / "crds"
    if not crds.is_dir():
        raise RuntimeError(f"CRDs not found in {crds} (set WASM_VISITS_SHARED to the shared/ directory)")
    schemas = {}
    for f in sorted(crds.glob("*.yaml")):
        for doc in load_docs(f.read_text()):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for v in doc["spec"]["versions"]:
                schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
                # metadata is validated by the API server as ObjectMeta, not by the CRD schema
                schema["properties"]["metadata"] = {"type": "object"}
                schema.setdefault("required", [])
                for req in ("apiVersion", "kind", "metadata", "spec"):
                    if req not in schema["required"]:
                        schema["required"].append(req)
                schema["properties"]["apiVersion"] = {"const": f"{group}/{v['name']}"}
                schema["properties"]["kind"] = {"const": kind}
                schemas[(f"{group}/{v['name']}", kind)] = _strictify(schema)
    return schemas


DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
OBJECT_META_KEYS = {"name", "namespace", "labels", "annotations"}


def validate_custom(obj: dict) -> list[str]:
    problems = []
    schema = crd_schemas().get((obj.get("apiVersion"), obj.get("kind")))
    if schema is None:
        return [f"no CRD schema for {obj.get('apiVersion')} {obj.get('kind')}"]
    validator = jsonschema.Draft7Validator(schema)
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.path)):
        problems.append(f"{'/'.join(map(str, err.path))}: {err.message}")
    md = obj.get("metadata") or {}
    extra = set(md) - OBJECT_META_KEYS
    if extra:
        problems.append(f"metadata: unexpected fields {sorted(extra)}")
    name = md.get("name", "")
    if not name or len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        problems.append(f"metadata.name {name!r} is not a DNS-1123 subdomain")
    for field in ("labels", "annotations"):
        if not all(isinstance(v, str) for v in (md.get(field) or {}).values()):
            problems.append(f"metadata.{field}: values must be strings")
    if obj.get("kind") == "SpinApp":
        spec = obj.get("spec", {})
        # the operator's webhook: replicas and enableAutoscaling are exclusive
        if spec.get("enableAutoscaling") and "replicas" in spec:
            problems.append("SpinApp: replicas cannot be set with enableAutoscaling: true")
        if not spec.get("enableAutoscaling") and spec.get("replicas", 1) < 1:
            problems.append("SpinApp: replicas must be > 0")
    return problems


# API groups whose kinds are custom resources: validated against the real CRDs in shared/crds
# (SpinKube, cert-manager, prometheus-operator), never by kubernetes-validate.
CRD_GROUPS = (CRD_GROUP, "cert-manager.io", "monitoring.coreos.com")


def validate_object(obj: dict) -> list[str]:
    """Validate one object: built-in kinds with kubernetes-validate --strict (1.32),
    custom kinds (CRD_GROUPS) with their CRD's openAPIV3Schema made strict."""
    api = obj.get("apiVersion", "")
    if api.split("/")[0] in CRD_GROUPS:
        return validate_custom(obj)
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'/'.join(map(str, e.path))}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"no schema: {e}"]
    return []


# ---------------------------------------------------------------- pods and selectors

def pod_templates(docs: list[dict]) -> list[dict]:
    """Every pod the render will produce, as {kind, name, namespace, labels, spec, owner}.
    A SpinApp yields the pods of the operator's Deployment: podLabels plus the labels
    the operator adds. A StatefulSet yields one entry per ordinal (pod-name label)."""
    pods = []
    for d in docs:
        kind, md = d.get("kind"), d.get("metadata", {})
        ns, name = md.get("namespace"), md.get("name")
        spec = d.get("spec") or {}
        if kind == "SpinApp":
            labels = dict(spec.get("podLabels") or {})
            labels["core.spinkube.dev/app-name"] = name
            labels[f"core.spinkube.dev/app.{name}.status"] = "ready"
            pods.append({"kind": kind, "name": name, "namespace": ns, "labels": labels, "spec": None, "owner": d})
        elif kind in WORKLOAD_KINDS:
            tmpl = spec.get("template") or {}
            if kind == "CronJob":
                tmpl = spec.get("jobTemplate", {}).get("spec", {}).get("template", {})
            labels = dict((tmpl.get("metadata") or {}).get("labels") or {})
            if kind == "StatefulSet":
                for i in range(spec.get("replicas", 1)):
                    pods.append({"kind": kind, "name": name, "namespace": ns, "spec": tmpl.get("spec"), "owner": d,
                                 "labels": {**labels, "statefulset.kubernetes.io/pod-name": f"{name}-{i}"}})
            else:
                pods.append({"kind": kind, "name": name, "namespace": ns, "labels": labels,
                             "spec": tmpl.get("spec"), "owner": d})
    return pods


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """Kubernetes LabelSelector semantics ({} matches everything)."""
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        k, op, vals = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def selector_problems(docs: list[dict]) -> list[str]:
    """Each Service/HPA/NetworkPolicy/workload selector must find something in the same render."""
    problems = []
    pods = pod_templates(docs)

    def matching(ns, selector):
        return [p for p in pods if p["namespace"] == ns and selector_matches(selector, p["labels"])]

    by_kind_name = {(d.get("kind"), d["metadata"].get("namespace"), d["metadata"].get("name")): d for d in docs}
    for d in docs:
        kind, md, spec = d.get("kind"), d.get("metadata", {}), d.get("spec") or {}
        ns, name = md.get("namespace"), md.get("name")
        where = f"{kind}/{name}"
        if kind == "Service" and spec.get("selector"):
            if not matching(ns, {"matchLabels": spec["selector"]}):
                problems.append(f"{where}: selector {spec['selector']} matches no pod template")
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
            tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not selector_matches(spec.get("selector"), tmpl_labels):
                problems.append(f"{where}: spec.selector does not match its own pod template")
        elif kind == "HorizontalPodAutoscaler":
            ref = spec.get("scaleTargetRef", {})
            target = by_kind_name.get((ref.get("kind"), ns, ref.get("name")))
            spinapp = by_kind_name.get(("SpinApp", ns, ref.get("name")))
            if ref.get("kind") == "Deployment" and ref.get("apiVersion") == "apps/v1" and target is not None:
                if "replicas" in (target.get("spec") or {}):
                    problems.append(f"{where}: Deployment/{ref.get('name')} sets spec.replicas and fights the HPA")
            elif ref.get("kind") == "Deployment" and ref.get("apiVersion") == "apps/v1" and spinapp is not None:
                # the operator's Deployment is named like the SpinApp
                if not (spinapp.get("spec") or {}).get("enableAutoscaling") or "replicas" in spinapp["spec"]:
                    problems.append(f"{where}: SpinApp/{ref.get('name')} must use enableAutoscaling: true "
                                    "without replicas, or the operator fights the HPA")
            else:
                problems.append(f"{where}: scaleTargetRef {ref} names no Deployment (or SpinApp) in this render")
        elif kind == "NetworkPolicy":
            if not matching(ns, spec.get("podSelector")):
                problems.append(f"{where}: podSelector matches no pod template")
            for direction, peer_key in (("ingress", "from"), ("egress", "to")):
                for rule in spec.get(direction) or []:
                    for peer in rule.get(peer_key) or []:
                        if "podSelector" in peer and "namespaceSelector" not in peer:
                            if not matching(ns, peer["podSelector"]):
                                problems.append(f"{where}: {direction} peer {peer['podSelector']} matches no pod template")
        elif kind == "PodDisruptionBudget":
            owners = {(p["kind"], p["name"]) for p in matching(ns, spec.get("selector"))}
            if len(owners) != 1:
                problems.append(f"{where}: selector must match the pods of exactly one workload, matches {sorted(owners)}")
        elif kind == "Ingress":
            services = {n for (k, n_ns, n) in by_kind_name if k == "Service" and n_ns == ns}
            spinapps = {n for (k, n_ns, n) in by_kind_name if k == "SpinApp" and n_ns == ns}
            for rule in spec.get("rules") or []:
                for path in (rule.get("http") or {}).get("paths") or []:
                    svc = path["backend"]["service"]["name"]
                    # the operator creates a Service named like each SpinApp
                    if svc not in services | spinapps:
                        problems.append(f"{where}: backend Service {svc} is not in this render")
    return problems


# ---------------------------------------------------------------- policies

def _is_zero(v) -> bool:
    return v in (0, "0", "0%")


def container_problems(where: str, c: dict, pod_sc: dict, long_running: bool, init: bool) -> list[str]:
    problems = []
    res = c.get("resources") or {}
    for section in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(section) or {}):
                problems.append(f"{where}: no resources.{section}.{r}")
    sc = c.get("securityContext") or {}
    if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
        problems.append(f"{where}: runAsNonRoot is not true")
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if uid == 0:
        problems.append(f"{where}: runs as uid 0")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        problems.append(f"{where}: capabilities do not drop ALL")
    if long_running and not init:
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in c:
                problems.append(f"{where}: no {probe}")
    return problems


def policy_problems(docs: list[dict]) -> list[str]:
    problems = []
    for d in docs:
        kind, name = d.get("kind"), d.get("metadata", {}).get("name")
        spec = d.get("spec") or {}
        where = f"{kind}/{name}"
        if kind in WORKLOAD_KINDS:
            if kind == "CronJob":
                tmpl = spec.get("jobTemplate", {}).get("spec", {}).get("template", {})
            else:
                tmpl = spec.get("template", {})
            pod = tmpl.get("spec") or {}
            pod_sc = pod.get("securityContext") or {}
            long_running = kind not in ("Job", "CronJob")
            for c in pod.get("initContainers") or []:
                problems += container_problems(f"{where} initContainer {c['name']}", c, pod_sc, long_running, True)
            for c in pod.get("containers") or []:
                problems += container_problems(f"{where} container {c['name']}", c, pod_sc, long_running, False)
            if kind == "Deployment":
                strat = spec.get("strategy") or {}
                if strat.get("type", "RollingUpdate") != "RollingUpdate" or \
                        not _is_zero((strat.get("rollingUpdate") or {}).get("maxUnavailable", "25%")):
                    problems.append(f"{where}: rolling update without maxUnavailable 0")
        elif kind == "SpinApp":
            res = spec.get("resources") or {}
            for section in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(section) or {}):
                        problems.append(f"{where}: no resources.{section}.{r}")
            checks = spec.get("checks") or {}
            for probe in ("liveness", "readiness"):
                if not ((checks.get(probe) or {}).get("httpGet") or {}).get("path"):
                    problems.append(f"{where}: no checks.{probe}.httpGet.path")
        elif kind == "ConfigMap":
            for k in (d.get("data") or {}):
                if re.search(r"password|keyfile|secret|token", k, re.I):
                    problems.append(f"{where}: key {k} looks secret: it belongs in a Secret")
    return problems


def web_pods(docs: list[dict]) -> dict[str, dict]:
    return {p["name"]: p for p in pod_templates(docs)
            if p["kind"] in ("Deployment", "SpinApp") and selector_matches({"matchLabels": WEB_LABELS}, p["labels"])}


def shared_objects(docs: list[dict]) -> dict:
    return {key(d): d for d in docs if d.get("kind") in SHARED_KINDS}


def web_env(docs: list[dict], name: str) -> dict[str, object]:
    """Settings of a web workload, lowercase names: SpinApp variables or container env."""
    for d in docs:
        if d["metadata"]["name"] != name:
            continue
        if d["kind"] == "SpinApp":
            return {v["name"]: v.get("value", v.get("valueFrom")) for v in d["spec"].get("variables") or []}
        if d["kind"] == "Deployment":
            env = d["spec"]["template"]["spec"]["containers"][0].get("env") or []
            return {e["name"].lower(): e.get("value", e.get("valueFrom")) for e in env}
    raise KeyError(name)


# ---------------------------------------------------------------- availability

HOSTNAME = "kubernetes.io/hostname"


def _workload_replicas(d: dict, docs: list[dict]) -> int:
    """Replicas a workload runs: StatefulSet spec.replicas; for the web apps the HPA's
    minReplicas (they leave spec.replicas to it), else spec.replicas (default 1)."""
    spec, name = d.get("spec") or {}, d["metadata"]["name"]
    for h in docs:
        if h.get("kind") == "HorizontalPodAutoscaler" and h["spec"]["scaleTargetRef"]["name"] == name:
            return h["spec"].get("minReplicas", 1)
    return spec.get("replicas", 1)


def availability_problems(docs: list[dict]) -> list[str]:
    """Disruption budgets, spreading and rolling-update settings (k8s/README.md):
    - every long-running workload (Deployment, StatefulSet, SpinApp) has exactly one PDB;
    - a PDB never forbids all evictions of a multi-pod workload, and a 1-pod workload's
      budget is the deliberate maxUnavailable 0 (not a no-op maxUnavailable 1);
    - every budget lets a not-Ready pod go (unhealthyPodEvictionPolicy AlwaysAllow);
    - multi-pod Deployments/StatefulSets spread over kubernetes.io/hostname with a
      selector that matches their own pods;
    - Deployments wait minReadySeconds, and sleep in preStop for less than the grace period."""
    problems = []
    pods = pod_templates(docs)
    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget"]
    for d in docs:
        kind, name = d.get("kind"), d["metadata"].get("name")
        if kind not in ("Deployment", "StatefulSet", "SpinApp"):
            continue
        where = f"{kind}/{name}"
        ns = d["metadata"].get("namespace")
        my_pods = [p for p in pods if p["owner"] is d]
        budgets = [b for b in pdbs if b["metadata"].get("namespace") == ns
                   and any(selector_matches(b["spec"].get("selector"), p["labels"]) for p in my_pods)]
        replicas = _workload_replicas(d, docs) if kind != "SpinApp" else next(
            (h["spec"].get("minReplicas", 1) for h in docs if h.get("kind") == "HorizontalPodAutoscaler"
             and h["spec"]["scaleTargetRef"]["name"] == name), (d.get("spec") or {}).get("replicas", 1))
        if len(budgets) != 1:
            problems.append(f"{where}: {len(budgets)} PodDisruptionBudgets select its pods, want exactly 1")
        for b in budgets:
            bs = b["spec"]
            bw = f"PodDisruptionBudget/{b['metadata']['name']}"
            if bs.get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
                problems.append(f"{bw}: unhealthyPodEvictionPolicy is not AlwaysAllow (a broken pod would block drains)")
            if "minAvailable" in bs and "maxUnavailable" in bs:
                problems.append(f"{bw}: sets both minAvailable and maxUnavailable")
            allowed = (replicas - bs["minAvailable"]) if "minAvailable" in bs else bs.get("maxUnavailable")
            if not isinstance(allowed, int):
                problems.append(f"{bw}: use an integer budget, got {allowed!r}")
            elif replicas > 1 and allowed < 1:
                problems.append(f"{bw}: allows no eviction of {where}'s {replicas} pods: every drain would block")
            elif replicas == 1 and allowed != 0:
                problems.append(f"{bw}: {where} has 1 pod; a budget allowing {allowed} eviction(s) protects nothing "
                                "(use maxUnavailable 0 and say so)")
        if kind == "SpinApp":
            continue  # the CRD has no scheduling or rollout fields (k8s/README.md)
        pod = ((d.get("spec") or {}).get("template") or {}).get("spec") or {}
        own = ((d["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        if replicas > 1:
            tsc = [c for c in pod.get("topologySpreadConstraints") or [] if c.get("topologyKey") == HOSTNAME]
            if not tsc:
                problems.append(f"{where}: {replicas} pods but no topologySpreadConstraint on {HOSTNAME}")
            for c in tsc:
                if not selector_matches(c.get("labelSelector"), own) or not c.get("labelSelector"):
                    problems.append(f"{where}: the {HOSTNAME} spread constraint's labelSelector does not match its pods")
        if kind == "Deployment":
            if not d["spec"].get("minReadySeconds"):
                problems.append(f"{where}: no minReadySeconds")
            grace = pod.get("terminationGracePeriodSeconds", 30)
            for c in pod.get("containers") or []:
                sleep = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds")
                if not sleep:
                    problems.append(f"{where} container {c['name']}: no preStop sleep for endpoint propagation")
                elif sleep >= grace:
                    problems.append(f"{where} container {c['name']}: preStop sleep {sleep}s >= grace period {grace}s")
    return problems
