"""The images `make images` builds with buildah have the layout the Dockerfiles describe
(files and their paths, user, entrypoint, environment, exposed port, platform), so users with
Docker (docker/*/Dockerfile) and without (scripts/images.sh) get the same images."""
from __future__ import annotations

import hashlib
import json
import shlex
import struct
import sys
import tarfile

import imagelib as il

sys.path.insert(0, str(il.REPO / "tests" / "k8s"))
import dockerfile_layout as dl  # noqa: E402

VERSION = "v1"


def final_stage(dockerfile: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for word, args in dl.stages(dockerfile)[-1]:
        out.setdefault(word, []).append(args)
    return out


def exec_form(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else ["/bin/sh", "-c", args]


def expected_config(stage: dict[str, list[str]]) -> dict:
    env = {}
    for e in stage.get("ENV", []):
        for kv in shlex.split(e):
            k, _, v = kv.partition("=")
            env[k] = v
    return {
        "Entrypoint": exec_form(stage["ENTRYPOINT"][-1]),
        "User": stage.get("USER", [None])[-1],
        "ExposedPorts": {f"{p}/tcp" if "/" not in p else p: {}
                         for e in stage.get("EXPOSE", []) for p in e.split()},
        "Env": env,
    }


def actual_config(config: dict) -> dict:
    c = config["config"]
    env = dict(e.split("=", 1) for e in c.get("Env", []))
    env.pop("PATH", None)  # buildah, like docker, sets the default PATH
    return {"Entrypoint": c.get("Entrypoint"), "User": c.get("User"),
            "ExposedPorts": c.get("ExposedPorts", {}), "Env": env}


def is_static_elf(data: bytes) -> bool:
    """No PT_INTERP program header: nothing to load it with in a scratch image."""
    assert data[:4] == b"\x7fELF" and data[4] == 2, "64-bit ELF expected"
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    return 3 not in types  # PT_INTERP


def test_wasm_image_is_the_dockerfile(built):
    text = (il.REPO / "docker/wasm/Dockerfile").read_text()
    _, config, layers = il.layout_image(built / "wasm-visits-image", VERSION)
    files = il.layer_files(layers)
    want = dl.copied_files(text)
    assert set(files) == set(want), (sorted(files), sorted(want))
    for dest, src in want.items():
        with tarfile.open(layers[0]) as t:
            data = t.extractfile(files[dest]).read()
        assert hashlib.sha256(data).digest() == hashlib.sha256((il.REPO / src).read_bytes()).digest(), dest
    assert actual_config(config) == expected_config(final_stage(text))
    assert (config["os"], config["architecture"]) == ("wasi", "wasm")
    assert dl.layout_problems(text, il.REPO / "spin.toml") == []


def test_native_image_is_the_dockerfile(built):
    text = (il.REPO / "docker/native/Dockerfile").read_text()
    stage = final_stage(text)
    assert dl.from_images(text)[-1] == "scratch"
    # The Dockerfile's only file: the builder's /out/visits-native, at /visits-native.
    copies = [shlex.split(a) for a in stage["COPY"]]
    assert [c[-1] for c in copies] == ["/visits-native"], copies
    _, config, layers = il.layout_image(built / "wasm-visits-native", VERSION)
    files = il.layer_files(layers)
    assert list(files) == ["/visits-native"], list(files)
    assert files["/visits-native"].mode & 0o111, "executable"
    with tarfile.open(layers[0]) as t:
        binary = t.extractfile(files["/visits-native"]).read()
    assert is_static_elf(binary)
    assert binary == (il.REPO / "target/x86_64-unknown-linux-musl/release/visits-native").read_bytes()
    assert actual_config(config) == expected_config(stage)
    assert config["config"]["User"].split(":")[0] != "0", "non-root"
    assert (config["os"], config["architecture"]) == ("linux", "amd64")


def test_static_check_can_fail():
    dynamic = (il.REPO / "target/release/visits-runner").read_bytes()
    assert not is_static_elf(dynamic)


def test_layout_comparison_can_fail():
    text = (il.REPO / "docker/native/Dockerfile").read_text()
    changed = text.replace("USER 65532:65532", "USER 1000:1000").replace("EXPOSE 8080", "EXPOSE 9090")
    exp = expected_config(final_stage(changed))
    assert exp["User"] == "1000:1000" and exp["ExposedPorts"] == {"9090/tcp": {}}
    _, config, _ = il.layout_image(il.LAYOUTS / "wasm-visits-native", VERSION)
    assert actual_config(config) != exp
