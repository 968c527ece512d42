#!/usr/bin/env bash
# Offline checks of the Kubernetes deployment (runtime-class/, k8s/, docker/):
#   1. renders runtime-class/ and every k8s/overlays/* with `kubectl kustomize`,
#   2. renders the Helm chart k8s/helm/wasm-visits (edition x MongoDB mode) with the
#      Helm v4 SDK from PyPI's helm-python-sdk (no helm binary needed),
#   3. runs kubernetes-validate --strict (Kubernetes 1.32) on the built-in objects,
#   4. runs pytest tests/k8s (CRD-schema validation of SpinApp/SpinAppExecutor,
#      cert-manager and prometheus-operator objects, policies, selectors, disruption
#      budgets/spreading/rollout settings, shared-object identity, Helm hooks and values,
#      the Wasm image layout against spin.toml, promtool check/test of the alert rules,
#      the dashboard, shellcheck of the drills, the diagrams against the renders and
#      re-rendered SVGs, negative tests).
#
# Needs: python3, kubectl (with its built-in kustomize), promtool, dot and shellcheck
# (Debian prometheus, graphviz, shellcheck: scripts/setup.sh), and the Python packages of
# tests/k8s/requirements.txt:   pip install -r tests/k8s/requirements.txt
# (this script installs them from that file, and nothing else, when they are missing).
# shared/ (the SpinKube CRDs) is expected beside the repository; WASM_VISITS_SHARED overrides.
# Rendered manifests are left in $K8S_RENDER_DIR (default: a temporary directory).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
PYTHON="${PYTHON:-python3}"
K8S_VERSION="${K8S_VERSION:-1.32.0}"

command -v kubectl >/dev/null || { echo "validate-k8s: kubectl is required (kubectl kustomize)" >&2; exit 2; }
command -v "$PYTHON" >/dev/null || { echo "validate-k8s: $PYTHON is required" >&2; exit 2; }
if ! "$PYTHON" -c 'import kubernetes_validate, jsonschema, yaml, pytest, helm_python' 2>/dev/null; then
  echo "validate-k8s: installing tests/k8s/requirements.txt"
  "$PYTHON" -m pip install --quiet -r tests/k8s/requirements.txt
fi

if [ -n "${K8S_RENDER_DIR:-}" ]; then
  out="$K8S_RENDER_DIR"
else
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
echo "validate-k8s: rendering into $out"

# 1. kustomize
targets=(runtime-class runtime-class/runtime-class-manager runtime-class/executor k8s/cluster/wasm-pod-defaults)
for d in k8s/overlays/*/; do targets+=("${d%/}"); done
for t in "${targets[@]}"; do
  f="$out/kustomize-$(echo "$t" | tr '/' '_').yaml"
  kubectl kustomize "$t" > "$f"
  echo "  kustomize $t: $(grep -c '^kind:' "$f") objects"
done

# 2. Helm
"$PYTHON" - "$out" <<'PY'
import pathlib, sys
import helm_python as helm
out = pathlib.Path(sys.argv[1])
chart = "k8s/helm/wasm-visits"
lint = helm.lint(chart, strict=True)
if lint["errors"]:
    sys.exit(f"helm lint: {lint['errors']}")
for edition in ("wasm", "container"):
    for mode in ("standalone", "replicaset"):
        with helm.Chart.load(chart) as c:
            rendered = c.render({"edition": edition, "mongo": {"mode": mode}}, name="visits", namespace="wasm-visits")
        text = "\n---\n".join(v for k, v in sorted(rendered.items()) if k.endswith(".yaml") and v.strip())
        f = out / f"helm-{edition}-{mode}.yaml"
        f.write_text(text)
        print(f"  helm template ({helm.helm_sdk_version()}) edition={edition} mongo={mode}: "
              f"{sum(1 for l in text.splitlines() if l.startswith('kind:'))} objects")
PY

# 3. kubernetes-validate --strict on the built-in kinds (SpinKube, cert-manager and
#    prometheus-operator kinds are validated against their CRDs in pytest;
#    kubernetes-validate has no schema for them)
"$PYTHON" - "$out" <<'PY'
import pathlib, sys, yaml
out = pathlib.Path(sys.argv[1])
builtin = []
for f in sorted(out.glob("*.yaml")):
    if f.name.startswith("builtin-"):
        continue
    docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
    docs = [d for d in docs if not d["apiVersion"].startswith(("core.spinkube.dev/", "cert-manager.io/", "monitoring.coreos.com/"))]
    target = out / f"builtin-{f.name}"
    target.write_text(yaml.safe_dump_all(docs, sort_keys=False))
PY
"$PYTHON" -m kubernetes_validate --kubernetes-version "$K8S_VERSION" --strict --quiet "$out"/builtin-*.yaml
echo "  kubernetes-validate --strict $K8S_VERSION: ok"

# 4. pytest
"$PYTHON" -m pytest -q tests/k8s "$@"
