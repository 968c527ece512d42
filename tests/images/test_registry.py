"""Registry round trip of both editions: build (make images), push to a local registry, pull
by digest, serve from what was pulled, GET / renders the page. Plus the pushed Spin artifact
checked against the format Spin v3.6.3 writes, and the size budgets.

No container runtime and no containerd-shim-spin here: the Wasm artifact is run by
`visits-runner up -f <reference>` (as `spin up -f <reference>` would), the native image by
unpacking its layer and executing its entrypoint with its config's environment and user."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import imagelib as il

# Spin v3.6.3, crates/oci/src/client.rs: SPIN_APPLICATION_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE;
# the config is oci_distribution's `Config::oci_v1_from_config_file` (OCI image config), the
# manifest `OciImageManifest::build` (OCI image manifest), the label in `push_locked_core`.
SPIN_APPLICATION_MEDIA_TYPE = "application/vnd.fermyon.spin.application.v1+config"
WASM_LAYER_MEDIA_TYPE = "application/vnd.wasm.content.layer.v1+wasm"
OCI_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LOCKED_APP_DIGEST_LABEL = "com.fermyon.spin.lockedAppDigest"

MB = 1_000_000
WASM_IMAGE_BUDGET = 1 * MB        # the FROM-scratch Wasm image, as a pull transfers it
SPIN_ARTIFACT_BUDGET = 1 * MB     # Spin pushes the components uncompressed
NATIVE_IMAGE_BUDGET = 15 * MB     # the native image, unpacked


def page_ok(body: bytes) -> None:
    text = body.decode()
    assert '<span id="visits" class="count">' in text, text[:500]
    assert "wasm-visits" in text


def test_wasm_spin_artifact_round_trip(registry, built, tmp_path):
    digest = il.push_wasm(registry, "ci")
    manifest, raw, headers = registry.manifest("wasm-visits", digest)
    assert il.sha256(raw) == digest
    # The tag points at the same manifest.
    assert il.sha256(registry.manifest("wasm-visits", "ci")[1]) == digest

    # ---- the format Spin v3.6.3 writes
    assert manifest["schemaVersion"] == 2
    # An OCI image manifest, by its Content-Type; the body has no mediaType field, as with
    # Spin's oci-distribution 0.11 (its OciImageManifest::default() leaves it None).
    assert headers["Content-Type"] == il.OCI_MANIFEST
    assert "mediaType" not in manifest
    assert manifest["config"]["mediaType"] == OCI_CONFIG_MEDIA_TYPE
    kinds = [l["mediaType"] for l in manifest["layers"]]
    assert kinds == [WASM_LAYER_MEDIA_TYPE] * 3 + [SPIN_APPLICATION_MEDIA_TYPE], kinds
    config = json.loads(registry.blob("wasm-visits", manifest["config"]["digest"]))
    assert (config["architecture"], config["os"]) == ("wasm", "wasip1")
    locked_desc = manifest["layers"][-1]
    assert config["config"]["Labels"][LOCKED_APP_DIGEST_LABEL] == locked_desc["digest"]
    assert config["rootfs"] == {"type": "layers", "diff_ids": []}
    locked = json.loads(registry.blob("wasm-visits", locked_desc["digest"]))
    assert locked["spin_lock_version"] == 1
    assert locked["must_understand"] == ["component_host_requirements"]
    assert [c["id"] for c in locked["components"]] == ["page", "counter", "recorder"]
    for comp, layer in zip(locked["components"], manifest["layers"]):
        wasm = (il.REPO / "target/wasm32-wasip2/wasm" / f"{comp['id']}.wasm").read_bytes()
        assert comp["source"] == {"content_type": "application/wasm", "digest": il.sha256(wasm)}
        assert layer["digest"] == il.sha256(wasm) and layer["size"] == len(wasm)
        assert registry.blob("wasm-visits", layer["digest"]) == wasm
    assert locked["components"][0]["host_requirements"] == {"local_service_chaining": "required"}
    assert {t["id"]: t["trigger_config"] for t in locked["triggers"]}["page-http-trigger"] == \
        {"component": "page", "route": "/..."}
    ann = manifest["annotations"]
    assert ann["org.opencontainers.image.title"] == "wasm-visits"
    assert ann["org.opencontainers.image.version"] == "0.1.0"
    assert "org.opencontainers.image.created" in ann

    size = len(raw) + manifest["config"]["size"] + sum(l["size"] for l in manifest["layers"])
    print(f"\nSpin artifact {registry.host}/wasm-visits@{digest}: {size:,} B")
    assert size <= SPIN_ARTIFACT_BUDGET

    # ---- pull by digest into an empty cache and serve from it
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    ref = f"{registry.host}/wasm-visits@{digest}"
    app = subprocess.Popen([str(il.RUNNER), "up", "--insecure", "-f", ref, "-q",
                            "--listen", f"127.0.0.1:{(port := il.free_port())}"],
                           env=env, stderr=subprocess.PIPE, text=True)
    try:
        _, body = il.wait_first_200(f"http://127.0.0.1:{port}/", app)
        page_ok(body)
    finally:
        il.stop(app)
        log = app.stderr.read()
    assert f"pulled {ref}" in log, log
    blobs = tmp_path / "cache/visits-runner/registry/blobs/sha256"
    assert (blobs / digest.split(":")[1]).exists(), "the manifest is cached by digest"
    for layer in manifest["layers"]:
        assert (blobs / layer["digest"].split(":")[1]).exists()

    # ---- a second start needs no registry: by digest, everything is in the cache
    registry_down = f"127.0.0.1:{il.free_port()}/wasm-visits@{digest}"
    app = subprocess.Popen([str(il.RUNNER), "up", "--insecure", "-f", registry_down, "-q",
                            "--listen", f"127.0.0.1:{(port := il.free_port())}"],
                           env=env, stderr=subprocess.DEVNULL)
    try:
        page_ok(il.wait_first_200(f"http://127.0.0.1:{port}/", app)[1])
    finally:
        il.stop(app)


def test_native_image_round_trip(registry, built, tmp_path):
    digest = il.push_native(registry, "ci")
    manifest, raw, _ = registry.manifest("wasm-visits-native", digest)
    assert il.sha256(raw) == digest
    # Pull by digest with skopeo into an empty OCI layout, as a node would pull it.
    pulled = tmp_path / "pulled"
    il.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
            f"docker://{registry.host}/wasm-visits-native@{digest}", f"oci:{pulled}:pulled"])
    manifest, config, layers = il.layout_image(pulled, "pulled")
    compressed = len(raw) + manifest["config"]["size"] + sum(l["size"] for l in manifest["layers"])
    rootfs = il.runnable_dir("native-rootfs-") / "rootfs"
    il.unpack(layers, rootfs)
    unpacked = sum(p.stat().st_size for p in rootfs.rglob("*") if p.is_file())
    print(f"\nnative image {registry.host}/wasm-visits-native@{digest}: "
          f"{compressed:,} B pulled, {unpacked:,} B unpacked")
    assert unpacked <= NATIVE_IMAGE_BUDGET

    # Run the entrypoint as the image says: its Env, its User (when we may switch to it).
    cfg = config["config"]
    env = dict(e.split("=", 1) for e in cfg.get("Env", []))
    port = il.free_port()
    env["LISTEN_ADDRESS"] = f"127.0.0.1:{port}"
    uid, gid = (int(x) for x in cfg["User"].split(":"))
    as_user = {"user": uid, "group": gid, "extra_groups": []} if os.geteuid() == 0 else {}
    entry = [str(rootfs / cfg["Entrypoint"][0].lstrip("/")), *cfg["Entrypoint"][1:]]
    app = subprocess.Popen(entry, env=env, cwd=rootfs, stderr=subprocess.PIPE, **as_user)
    try:
        _, body = il.wait_first_200(f"http://127.0.0.1:{port}/", app)
        page_ok(body)
    finally:
        il.stop(app)
        shutil.rmtree(rootfs.parent)


def runner_fails(tmp_path, *args: str) -> str:
    """Run visits-runner with an empty cache; it must exit 1. Returns its stderr."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    p = subprocess.run([str(il.RUNNER), *args], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1, (p.returncode, p.stderr)
    return p.stderr


def test_pull_refuses_a_container_image_as_a_spin_app(registry, built, tmp_path):
    """`up -f` on the native image: a clear error, not a crash."""
    digest = il.push_native(registry, "not-spin")
    err = runner_fails(tmp_path, "up", "--insecure", "-f",
                       f"{registry.host}/wasm-visits-native@{digest}")
    assert "is not a Spin application" in err, err


def test_pull_of_a_missing_tag_fails_clearly(registry, built, tmp_path):
    err = runner_fails(tmp_path, "registry", "pull", "--insecure",
                       f"{registry.host}/wasm-visits:no-such-tag")
    assert "cannot pull the manifest" in err, err


def test_push_of_a_bad_reference_fails_clearly(built, tmp_path):
    err = runner_fails(tmp_path, "registry", "push", "--insecure", "NOT A REF")
    assert "invalid registry reference" in err, err
