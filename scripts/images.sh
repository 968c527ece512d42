#!/usr/bin/env bash
# `make images`: both images, built with buildah (no Docker engine) and without pulling any
# base image (both are FROM scratch):
#   - the Wasm image: docker/wasm/Dockerfile as it is (spin.toml + the three components at the
#     paths spin.toml names), for containerd-shim-spin's FROM-scratch path;
#   - the native image: the final stage of docker/native/Dockerfile, with the static musl
#     visits-native built here instead of in the rust:alpine builder stage (no base image can be
#     pulled here; users with Docker build the multi-stage Dockerfile as it is).
# Both end up as OCI layouts under target/images/ (what `make push` copies to a registry);
# the Spin OCI artifact needs no build: `visits-runner registry push` assembles it.
# Prints the sizes. Needs buildah (scripts/setup.sh), the components (make wasm) and rustup.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${VERSION:-v1}
out=target/images
musl=x86_64-unknown-linux-musl
mkdir -p "$out"
# A private buildah store: vfs (no overlay mounts needed), chroot isolation (no runc/crun).
root=$PWD/$out/storage
bah() { buildah --root "$root/root" --runroot "$root/run" --storage-driver vfs "$@"; }

command -v buildah >/dev/null || { echo "images: buildah is missing (run scripts/setup.sh)" >&2; exit 1; }
for c in page counter recorder; do
    [ -f "target/wasm32-wasip2/wasm/$c.wasm" ] || { echo "images: target/wasm32-wasip2/wasm/$c.wasm is missing (make wasm)" >&2; exit 1; }
done

# ---- the static native binary
if ! rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
    echo "images: adding rustup target $musl" >&2
    rustup target add "$musl" >&2 || {
        echo "images: cannot add the rustup target $musl, needed for the static visits-native (no network to static.rust-lang.org?)" >&2
        exit 1
    }
fi
# ring compiles C and assembly: with musl's own headers (Debian musl-tools) where available.
if command -v musl-gcc >/dev/null; then export CC_x86_64_unknown_linux_musl=musl-gcc; fi
t0=$(date +%s)
cargo build --release --locked --target "$musl" -p visits-native --bin visits-native
echo "images: musl build of visits-native took $(( $(date +%s) - t0 )) s"
bin=target/$musl/release/visits-native
if ldd "$bin" 2>&1 | grep -q '=>'; then echo "images: $bin is not static" >&2; exit 1; fi

# ---- build contexts: only what each image copies
ctx=$out/context
rm -rf "$ctx" && mkdir -p "$ctx/wasm/target/wasm32-wasip2/wasm" "$ctx/native"
cp spin.toml "$ctx/wasm/"
cp target/wasm32-wasip2/wasm/{page,counter,recorder}.wasm "$ctx/wasm/target/wasm32-wasip2/wasm/"
cp "$bin" "$ctx/native/visits-native"
# The native Dockerfile's final stage, its one COPY --from=builder taken from the context.
awk '/^FROM scratch/{on=1} on' docker/native/Dockerfile \
    | sed 's#^COPY --from=builder /out/visits-native #COPY visits-native #' > "$ctx/native/Containerfile"
grep -q '^COPY visits-native /visits-native' "$ctx/native/Containerfile" \
    || { echo "images: docker/native/Dockerfile's final stage changed: update scripts/images.sh" >&2; exit 1; }

# Reproducible: file times and the image's creation time are the last commit's.
stamp=$(git log -1 --format=%ct 2>/dev/null || echo 0)
build() { # name context containerfile platform
    local name=$1
    bah rmi -f "localhost/$name:$VERSION" >/dev/null 2>&1 || true
    bah bud --quiet --isolation chroot --layers=false --timestamp "$stamp" --platform "$4" -f "$3" -t "localhost/$name:$VERSION" "$2" >/dev/null
    rm -rf "$out/$name"
    bah push --quiet "localhost/$name:$VERSION" "oci:$out/$name:$VERSION"
}
# wasi/wasm: what `docker buildx build --platform wasi/wasm` (docker/README.md) sets.
build wasm-visits-image "$ctx/wasm" docker/wasm/Dockerfile wasi/wasm
build wasm-visits-native "$ctx/native" "$ctx/native/Containerfile" linux/amd64

# ---- sizes: bytes a pull transfers (manifest + config + compressed layers) and unpacked
python3 - "$out" "$VERSION" <<'PY'
import json, pathlib, sys
out, version = pathlib.Path(sys.argv[1]), sys.argv[2]
wasm = [pathlib.Path(f"target/wasm32-wasip2/wasm/{c}.wasm") for c in ("page", "counter", "recorder")]
rows = {"spin-artifact-components": sum(p.stat().st_size for p in wasm)}
for name in ("wasm-visits-image", "wasm-visits-native"):
    layout = out / name
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == version)
    blob = lambda d: layout / "blobs" / d["digest"].replace(":", "/")
    manifest = json.loads(blob(desc).read_text())
    pulled = desc["size"] + manifest["config"]["size"] + sum(l["size"] for l in manifest["layers"])
    rows[name] = pulled
lines = [f"{k},{v}" for k, v in rows.items()]
(out / "sizes.csv").write_text("image,bytes\n" + "\n".join(lines) + "\n")
print("images: sizes (bytes a pull transfers; the Spin artifact: its Wasm layers, uncompressed,"
      " plus a few KB of locked app and config)")
for k, v in rows.items():
    print(f"  {k:28s} {v:>10,d} B  ({v / 1e6:.2f} MB)")
PY
echo "images: localhost/wasm-visits-image:$VERSION, localhost/wasm-visits-native:$VERSION (OCI layouts in $out/)"
