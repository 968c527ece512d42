#!/usr/bin/env bash
# `make deploy-manifests REGISTRY=host:port [VERSION=v1]`: ready-to-apply YAML with the images
# at $REGISTRY/wasm-visits:$VERSION (SpinApps) and $REGISTRY/wasm-visits-native:$VERSION
# (Deployments), in target/deploy/:
#   <overlay>.yaml         every k8s/overlays/* rendered with kubectl kustomize, its `images:`
#                          overridden (the one place manifests name the images)
#   helm-<edition>.yaml    the Helm chart (images.wasm/native.repository + version), when the
#                          Helm SDK of tests/k8s/requirements.txt is installed
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
REGISTRY=${REGISTRY:?usage: make deploy-manifests REGISTRY=host:port [VERSION=v1]}
VERSION=${VERSION:-v1}
out=target/deploy
mkdir -p "$out"
# kustomize wants the overlay as a relative path: the wrapper lives inside the repository.
work=$out/.work
trap 'rm -rf "$work"' EXIT

for overlay in k8s/overlays/*/; do
    name=$(basename "$overlay")
    mkdir -p "$work/$name"
    # A kustomization on top of the overlay: the same `images:` names, new registry and tag.
    cat > "$work/$name/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../../../${overlay%/}
images:
  - name: ghcr.io/wasm-visits/wasm-visits
    newName: $REGISTRY/wasm-visits
    newTag: $VERSION
  - name: ghcr.io/wasm-visits/wasm-visits-native
    newName: $REGISTRY/wasm-visits-native
    newTag: $VERSION
YAML
    kubectl kustomize "$work/$name" > "$out/$name.yaml"
    echo "deploy-manifests: $out/$name.yaml ($(grep -c '^kind:' "$out/$name.yaml") objects)"
done

if python3 -c 'import helm_python' 2>/dev/null; then
    python3 - "$out" "$REGISTRY" "$VERSION" <<'PY'
import pathlib, sys
import helm_python as helm
out, registry, version = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
for edition in ("wasm", "container"):
    values = {"edition": edition, "version": version, "images": {
        "wasm": {"repository": f"{registry}/wasm-visits"},
        "native": {"repository": f"{registry}/wasm-visits-native"}}}
    with helm.Chart.load("k8s/helm/wasm-visits") as c:
        rendered = c.render(values, name="visits", namespace="wasm-visits")
    text = "\n---\n".join(v for k, v in sorted(rendered.items()) if k.endswith(".yaml") and v.strip())
    f = out / f"helm-{edition}.yaml"
    f.write_text(text + "\n")
    print(f"deploy-manifests: {f} (helm, edition={edition})")
PY
else
    echo "deploy-manifests: Helm SDK not installed (pip install -r tests/k8s/requirements.txt); with helm:"
    echo "  helm template visits k8s/helm/wasm-visits --set version=$VERSION \\"
    echo "    --set images.wasm.repository=$REGISTRY/wasm-visits --set images.native.repository=$REGISTRY/wasm-visits-native"
fi
