"""`make deploy-manifests REGISTRY=... VERSION=...` puts the images at that registry and tag
everywhere (kustomize overlays and Helm), and nowhere leaves the default ghcr.io names."""
from __future__ import annotations

import os
import subprocess

import yaml

import imagelib as il


def images(docs):
    for d in docs:
        if not d:
            continue
        if d["kind"] == "SpinApp":
            yield d["metadata"]["name"], d["spec"]["image"]
        spec = d.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            yield d["metadata"]["name"], c["image"]


def test_deploy_manifests_use_the_registry():
    env = dict(os.environ, REGISTRY="registry.example:5111", VERSION="v7")
    out = subprocess.run(["scripts/deploy-manifests.sh"], cwd=il.REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rendered = sorted((il.REPO / "target/deploy").glob("*.yaml"))
    overlays = {p.name for p in (il.REPO / "k8s/overlays").iterdir() if p.is_dir()}
    assert {f"{o}.yaml" for o in overlays} <= {p.name for p in rendered}
    for f in rendered:
        text = f.read_text()
        assert "ghcr.io/wasm-visits" not in text, f
        ours = [(n, i) for n, i in images(yaml.safe_load_all(text)) if "wasm-visits" in i]
        assert ours, f"{f.name}: no app image"
        for name, image in ours:
            assert image in ("registry.example:5111/wasm-visits:v7",
                             "registry.example:5111/wasm-visits-native:v7"), (f.name, name, image)
        wasm = f.name.startswith(("wasm", "helm-wasm"))
        edition = "wasm-visits:v7" if wasm else "wasm-visits-native:v7"
        assert any(i.endswith(edition) for _, i in ours), (f.name, ours)
