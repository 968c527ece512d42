"""docs/diagrams: the drift test. The names, addresses and ports drawn in the Graphviz sources
must be those of ops/local/topology.toml (local-replicas.dot) and of the kustomize renders
(k8s-wasm.dot: k8s/overlays/wasm + wasm-replicaset; k8s-container.dot: container +
container-replicaset), and every committed SVG must be the rendering of its source
(scripts/render-diagrams.sh --check re-renders with Graphviz and compares)."""
import hashlib
import re
import subprocess
import tomllib

import pytest

import k8s_checks as kc

DIAGRAMS = kc.REPO / "docs" / "diagrams"
LABEL = re.compile(r'label="((?:[^"\\]|\\.)*)"')


def labels(dot: str) -> list[str]:
    """Every label of the source (comments dropped), with \\n as real newlines."""
    text = "\n".join(l for l in dot.splitlines() if not l.lstrip().startswith("//"))
    return [m.group(1).replace("\\n", "\n").replace('\\"', '"') for m in LABEL.finditer(text)]


def topology() -> dict:
    return tomllib.loads((kc.REPO / "ops" / "local" / "topology.toml").read_text())


# ---------------------------------------------------------------- local replicas

def local_problems(dot: str, topo: dict) -> list[str]:
    r = topo["replicas"]
    n = r["count"]
    app = [f"127.0.0.1:{r['first_port'] + i}" for i in range(n)]
    admin = [f"127.0.0.1:{r['first_admin_port'] + i}" for i in range(n)]
    want = {topo["nginx"]["listen"], topo["redis"]["listen"], topo["mongodb"]["listen"],
            topo["prometheus"]["listen"], *app, *admin}
    ls = labels(dot)
    drawn = {a for l in ls for a in re.findall(r"\b\d+\.\d+\.\d+\.\d+:\d+\b", l)}
    problems = [f"drawn but not in topology.toml: {a}" for a in sorted(drawn - want)]
    problems += [f"in topology.toml but not drawn: {a}" for a in sorted(want - drawn)]
    replicas = [l for l in ls if l.startswith(r["hostname_prefix"])]
    names = [l.split()[0] for l in replicas]
    if names != [f"{r['hostname_prefix']}{i + 1}" for i in range(n)]:
        problems.append(f"replica nodes {names}, want {n} named {r['hostname_prefix']}<i>")
    for i, l in enumerate(replicas):
        if app[i] not in l or admin[i] not in l:
            problems.append(f"{names[i]}: want app {app[i]} and admin {admin[i]} in its node")
    nginx = next((l for l in ls if l.startswith("nginx")), "")
    if topo["nginx"]["listen"] not in nginx or not all(a in nginx for a in app):
        problems.append("the nginx node must show its listen address and every upstream replica")
    return problems


def test_local_diagram_matches_topology():
    problems = local_problems((DIAGRAMS / "local-replicas.dot").read_text(), topology())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("old,new,says", [
    ("127.0.0.1:6390", "127.0.0.1:6391", "127.0.0.1:6391"),
    ("admin /metrics 127.0.0.1:9102", "admin /metrics 127.0.0.1:9112", "127.0.0.1:9112"),
    ('replica3 [fillcolor="#e8f5e9", label="replica-3', 'replica3 [fillcolor="#e8f5e9", label="replica-4', "replica nodes"),
])
def test_local_drift_is_caught(old, new, says):
    dot = (DIAGRAMS / "local-replicas.dot").read_text()
    assert old in dot
    assert any(says in p for p in local_problems(dot.replace(old, new), topology()))


def test_local_drift_in_topology_is_caught():
    topo = topology()
    topo["replicas"]["count"] = 4
    assert any("not drawn" in p for p in local_problems((DIAGRAMS / "local-replicas.dot").read_text(), topo))


# ---------------------------------------------------------------- Kubernetes

def _services(docs):
    """{name: (port, target port number)} of the ClusterIP Services, resolving named
    target ports through the selected pods; the operator's Service of each SpinApp is
    port 80 -> 80 (spin-operator v0.6.1)."""
    pods = kc.pod_templates(docs)
    out = {}
    for d in docs:
        if d["kind"] == "SpinApp":
            out[d["metadata"]["name"]] = (80, 80)
        if d["kind"] != "Service" or d["spec"].get("clusterIP") == "None":
            continue
        (p,) = d["spec"]["ports"]
        target = p.get("targetPort", p["port"])
        if isinstance(target, str):
            for pod in pods:
                if kc.selector_matches({"matchLabels": d["spec"]["selector"]}, pod["labels"]) and pod["spec"]:
                    for c in pod["spec"]["containers"]:
                        target = next((cp["containerPort"] for cp in c.get("ports", []) if cp.get("name") == target), target)
        out[d["metadata"]["name"]] = (p["port"], target)
    return out


def _seeds(docs):
    env = kc.web_env(docs, "webdb")
    return {env[k] for k in ("mongo_address", "mongo_address2", "mongo_address3")}


def k8s_problems(dot: str, docs: list[dict], rs_docs: list[dict]) -> list[str]:
    problems = []
    ls = labels(dot)
    note = next(l for l in ls if "instead" in l)           # the replica-set variant
    main = [l for l in ls if l is not note]
    text = "\n".join(main)

    # Services: ClusterIP :port -> pod :targetPort
    drawn = {m[0]: (int(m[1]), int(m[2])) for m in
             re.findall(r"Service ([a-z0-9-]+)(?: \([^)\n]*\))?\nClusterIP :(\d+) -> pod :(\d+)", text)}
    want = _services(docs)
    if drawn != want:
        problems.append(f"Services drawn {drawn}, rendered {want}")
    rs_want = {n: v for n, v in _services(rs_docs).items() if n not in want}
    rs_drawn = {m[0]: (int(m[1]), int(m[1])) for m in re.findall(r"Service (mongo-\d) :(\d+)", note)}
    if rs_drawn != {n: (p, p) for n, (p, _) in rs_want.items()}:
        problems.append(f"replica-set Services drawn {sorted(rs_drawn)}, rendered {sorted(rs_want)}")

    # headless Services: <pod>.<service>:<port>
    headless = {d["metadata"]["name"]: d["spec"]["ports"][0]["port"] for d in docs
                if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"}
    sts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}
    for svc, pod, svc2, port in re.findall(r"headless ([a-z0-9-]+): ([a-z0-9-]+)\.([a-z0-9-]+):(\d+)", text):
        owner = next((s for s in sts.values() if s["spec"]["serviceName"] == svc), None)
        if svc != svc2 or headless.get(svc) != int(port) or owner is None or pod != f"{owner['metadata']['name']}-0":
            problems.append(f"headless {svc}: {pod}.{svc2}:{port} is not in the render")
    if set(headless) != set(re.findall(r"headless ([a-z0-9-]+):", text)):
        problems.append(f"headless Services drawn {re.findall(r'headless ([a-z0-9-]+):', text)}, rendered {sorted(headless)}")

    # StatefulSets and their sizes, budgets; Deployments' budgets and HPA bounds
    for name, n in re.findall(r"StatefulSet ([a-z0-9-]+) \((\d+)", text):
        if name not in sts or sts[name]["spec"]["replicas"] != int(n):
            problems.append(f"StatefulSet {name} ({n}) is not in the render")
    rs_sts = {d["metadata"]["name"]: d["spec"]["replicas"] for d in rs_docs if d["kind"] == "StatefulSet"}
    for name, n in re.findall(r"StatefulSet ([a-z0-9-]+) \((\d+)", note):
        if rs_sts.get(name) != int(n):
            problems.append(f"replica-set note: StatefulSet {name} ({n}), rendered {rs_sts.get(name)}")
    pdbs = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    rs_pdbs = {d["metadata"]["name"]: d["spec"] for d in rs_docs if d["kind"] == "PodDisruptionBudget"}
    for label, budgets in [(l, pdbs) for l in main] + [(note, rs_pdbs)]:
        m = re.search(r"(?:Deployment|StatefulSet) ([a-z0-9-]+)", label)
        for kind, n in re.findall(r"PDB (maxUnavailable|minAvailable) (\d+)", label):
            if budgets.get(m.group(1), {}).get(kind) != int(n):
                problems.append(f"{m.group(1)}: PDB {kind} {n} drawn, rendered {budgets.get(m.group(1))}")
    hpas = {d["metadata"]["name"]: (d["spec"]["minReplicas"], d["spec"]["maxReplicas"]) for d in docs
            if d["kind"] == "HorizontalPodAutoscaler"}
    for label in main:
        m = re.search(r"Deployment ([a-z0-9-]+)\n.*HPA (\d+)-(\d+)", label)
        if m and hpas.get(m.group(1)) != (int(m.group(2)), int(m.group(3))):
            problems.append(f"{m.group(1)}: HPA {m.group(2)}-{m.group(3)} drawn, rendered {hpas.get(m.group(1))}")

    # the Ingress rules and the client's URL
    ing = next(d for d in docs if d["kind"] == "Ingress")
    rules = {(r["host"], p["backend"]["service"]["name"], p["backend"]["service"]["port"]["number"])
             for r in ing["spec"]["rules"] for p in r["http"]["paths"]}
    drawn_rules = {(h, s, int(p)) for h, s, p in re.findall(r"([a-z0-9-]+\.[a-z0-9.-]+) -> Service ([a-z0-9-]+) :(\d+)", text)}
    if drawn_rules != rules:
        problems.append(f"Ingress rules drawn {sorted(drawn_rules)}, rendered {sorted(rules)}")
    for host in re.findall(r"http://([a-z0-9.-]+):\d+/", text):
        if host not in {h for h, _, _ in rules}:
            problems.append(f"the client asks for {host}, which no Ingress rule serves")

    # the containers and the ports they listen on
    containers = set()
    for p in kc.web_pods(docs).values():
        if p["kind"] == "SpinApp":
            containers.add((p["name"], 80))        # the operator names the container like the app
        else:
            containers |= {(c["name"], c["ports"][0]["containerPort"]) for c in p["spec"]["containers"]}
    drawn_c = {(n, int(p)) for n, p in re.findall(r"container ([a-z0-9-]+)(?: \([^)\n]*\))? :(\d+)", text)}
    if drawn_c != containers:
        problems.append(f"containers drawn {sorted(drawn_c)}, rendered {sorted(containers)}")

    # what the web pods connect to
    redis = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "wasm-visits-config")["data"]["redis_address"]
    for addr in set(re.findall(r"\bredis:\d+\b", text)):
        if addr != redis:
            problems.append(f"web pods reach Redis at {addr} in the drawing, at {redis} in the ConfigMap")
    if redis not in text:
        problems.append(f"the Redis address {redis} is not drawn")
    for label, rendered in ((text, _seeds(docs)), (note, _seeds(rs_docs))):
        seeds = set(re.findall(r"\$\([A-Z0-9_]+_SERVICE_HOST\):\d+", label))
        if seeds != rendered:
            problems.append(f"MongoDB seeds drawn {sorted(seeds)}, rendered {sorted(rendered)}")
    return problems


EDITIONS = {"wasm": ("k8s-wasm.dot", "wasm", "wasm-replicaset"),
            "container": ("k8s-container.dot", "container", "container-replicaset")}


@pytest.mark.parametrize("edition", EDITIONS)
def test_k8s_diagram_matches_render(edition):
    dot, overlay, rs = EDITIONS[edition]
    problems = k8s_problems((DIAGRAMS / dot).read_text(), kc.kustomize(f"k8s/overlays/{overlay}"),
                            kc.kustomize(f"k8s/overlays/{rs}"))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("old,new,says", [
    ("Service redis\\nClusterIP :6379 -> pod :6379", "Service redis\\nClusterIP :6380 -> pod :6379", "Services drawn"),
    ("ClusterIP :80 -> pod :8080", "ClusterIP :80 -> pod :8000", "Services drawn"),
    ("webnodb.visits.localhost -> Service webnodb :80", "webnodb.visits.localhost -> Service webdb :80", "Ingress rules"),
    ("container web (visits-native) :8080\\nGET", "container web (visits-native) :8081\\nGET", "containers drawn"),
    ("headless mongo: mongo-0.mongo:27017", "headless mongo: mongo-1.mongo:27017", "headless mongo"),
    ("4. redis:6379 (DNS)", "4. redis:6380 (DNS)", "reach Redis at redis:6380"),
    ("5. $(MONGODB_SERVICE_HOST):27017", "5. $(MONGO_SERVICE_HOST):27017", "MongoDB seeds"),
    ("Service mongo-2 :27017", "Service mongo-3 :27017", "replica-set Services"),
    ("StatefulSet mongo (3, rs0), PDB minAvailable 2", "StatefulSet mongo (3, rs0), PDB minAvailable 1", "PDB minAvailable 1"),
    ("pods webdb-<hash>-<id>: HPA 3-10", "pods webdb-<hash>-<id>: HPA 2-10", "HPA 2-10"),
])
def test_k8s_drift_is_caught(old, new, says):
    dot = (DIAGRAMS / "k8s-container.dot").read_text()
    assert old in dot, old
    problems = k8s_problems(dot.replace(old, new), kc.kustomize("k8s/overlays/container"),
                            kc.kustomize("k8s/overlays/container-replicaset"))
    assert any(says in p for p in problems), problems


def test_k8s_drift_in_manifests_is_caught():
    docs = kc.kustomize("k8s/overlays/wasm")
    next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "mongodb")["spec"]["ports"][0]["port"] = 27018
    problems = k8s_problems((DIAGRAMS / "k8s-wasm.dot").read_text(), docs, kc.kustomize("k8s/overlays/wasm-replicaset"))
    assert any("Services drawn" in p for p in problems), problems


# ---------------------------------------------------------------- the SVGs

def test_every_svg_has_its_source_and_hash():
    dots = {p.stem for p in DIAGRAMS.glob("*.dot")}
    svgs = {p.stem for p in DIAGRAMS.glob("*.svg")}
    assert dots == svgs and dots >= {"local-replicas", "k8s-wasm", "k8s-container"}
    for name in dots:
        digest = hashlib.sha256((DIAGRAMS / f"{name}.dot").read_bytes()).hexdigest()
        head = (DIAGRAMS / f"{name}.svg").read_text().splitlines()[1]
        assert head == f"<!-- source: docs/diagrams/{name}.dot sha256:{digest} -->", \
            f"{name}.svg is stale: run scripts/render-diagrams.sh"


def test_svgs_are_the_rendering_of_the_sources():
    r = subprocess.run([str(kc.REPO / "scripts" / "render-diagrams.sh"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
