"""docker/: the Wasm image holds spin.toml and each component at the path the manifest
names; the native image is a static, non-root binary; compose wires Redis and MongoDB."""
import pathlib

import pytest
import yaml

import dockerfile_layout as dl
import k8s_checks as kc

WASM_DOCKERFILE = kc.REPO / "docker" / "wasm" / "Dockerfile"
NATIVE_DOCKERFILE = kc.REPO / "docker" / "native" / "Dockerfile"
MANIFEST = kc.REPO / "spin.toml"


def test_wasm_image_layout_matches_spin_toml():
    if not MANIFEST.exists():
        pytest.skip("spin.toml does not exist yet at the repository root: nothing to compare the COPY lines with")
    problems = dl.layout_problems(WASM_DOCKERFILE.read_text(), MANIFEST)
    assert not problems, "\n".join(problems)


def test_wasm_dockerignore_lets_the_sources_in():
    ignore = (WASM_DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*")] == "*"
    assert "!spin.toml" in ignore
    assert "!target/wasm32-wasip2/wasm/*.wasm" in ignore


def test_layout_check_can_fail(tmp_path: pathlib.Path):
    manifest = tmp_path / "spin.toml"
    manifest.write_text('spin_manifest_version = 2\n[application]\nname = "x"\n'
                        '[component.a]\nsource = "target/wasm32-wasip2/wasm/a.wasm"\n'
                        '[component.b]\nsource = "./out/b.wasm"\n'
                        '[component.c]\nsource = { url = "https://example.invalid/c.wasm", digest = "sha256:00" }\n')
    good = ("FROM scratch\nCOPY spin.toml /spin.toml\n"
            "COPY target/wasm32-wasip2/wasm/a.wasm /target/wasm32-wasip2/wasm/a.wasm\n"
            "COPY [\"out/b.wasm\", \"/out/\"]\n")
    assert dl.layout_problems(good, manifest) == []
    missing = good.replace("COPY [\"out/b.wasm\", \"/out/\"]\n", "")
    assert any("component b" in p for p in dl.layout_problems(missing, manifest))
    wrong_place = good.replace("/target/wasm32-wasip2/wasm/a.wasm", "/a.wasm")
    assert any("component a" in p for p in dl.layout_problems(wrong_place, manifest))
    not_scratch = good.replace("FROM scratch", "FROM alpine")
    assert any("scratch" in p for p in dl.layout_problems(not_scratch, manifest))


def test_native_dockerfile():
    text = NATIVE_DOCKERFILE.read_text()
    st = dl.stages(text)
    assert len(st) >= 2, "multi-stage build expected"
    images = dl.from_images(text)
    assert images[0].startswith("rust:") and "alpine" in images[0], images  # musl target
    assert images[-1] == "scratch" or images[-1].startswith("gcr.io/distroless/static"), images
    final = dict((w, a) for w, a in st[-1])
    assert final["USER"].split(":")[0] == "65532"
    assert final["EXPOSE"] == "8080"
    assert "visits-native" in final["ENTRYPOINT"]
    build = " ".join(a for w, a in st[0] if w == "RUN")
    assert "-p visits-native" in build and "--release" in build
    native = (kc.REPO / "crates" / "native" / "Cargo.toml").read_text()
    assert 'name = "visits-native"' in native


def test_native_image_matches_k8s():
    """The k8s container edition runs the image as the Dockerfile's USER on its port."""
    docs = kc.kustomize("k8s/overlays/container")
    for d in docs:
        if d["kind"] == "Deployment":
            pod = d["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsUser"] == 65532
            assert pod["containers"][0]["ports"][0]["containerPort"] == 8080


def test_compose():
    compose = yaml.safe_load((kc.REPO / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"webdb", "webnodb", "redis", "mongo"} <= set(services)
    assert services["mongo"]["image"].startswith("mongo:7.0")
    for name in ("webdb", "webnodb"):
        s = services[name]
        assert s["build"]["dockerfile"] == "docker/native/Dockerfile"
        assert s["read_only"] is True and s["user"].startswith("65532")
        env = s["environment"]
        assert env["COUNTER_BACKEND"] == "redis" and env["REDIS_ADDRESS"] == "redis:6379"
        assert env["RECORDS_BACKEND"] == ("mongodb" if name == "webdb" else "off")
        assert env["LISTEN_ADDRESS"].endswith(":8080")
        if name == "webdb":
            # the app takes IP:port seeds only: mongo has a fixed address on the compose network
            import ipaddress
            mongo_ip = services["mongo"]["networks"]["visits"]["ipv4_address"]
            subnet = compose["networks"]["visits"]["ipam"]["config"][0]["subnet"]
            assert ipaddress.ip_address(mongo_ip) in ipaddress.ip_network(subnet)
            for k in ("MONGO_ADDRESS", "MONGO_ADDRESS2", "MONGO_ADDRESS3"):
                host, port = env[k].rsplit(":", 1)
                assert host == mongo_ip and port == "27017", env[k]
