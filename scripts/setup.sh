#!/usr/bin/env bash
# Installs everything the build, the tests and the benchmarks need, from the package registries
# only (Debian, PyPI, npm, crates.io). Safe to run again. Run as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

# Servers and tools the end-to-end, browser and benchmark runs start on loopback.
# Images without a Docker engine: buildah (builds FROM scratch images; vfs storage, chroot
# isolation), skopeo (copies images between OCI layouts and registries), docker-registry (CNCF
# distribution 2.8: the tests' local registry), musl-tools (musl-gcc: ring's C and assembly
# for the static x86_64-unknown-linux-musl visits-native).
apt_packages=(redis-server redis-tools chromium wrk buildah skopeo docker-registry musl-tools)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: apt-get install ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packages start a system redis on 6379; the tests start their own on free ports.
$sudo service redis-server stop >/dev/null 2>&1 || true
# docker-registry's package starts a system registry on :5000; the tests start their own.
$sudo service docker-registry stop >/dev/null 2>&1 || true
$sudo update-rc.d docker-registry disable >/dev/null 2>&1 || true
$sudo systemctl disable --now docker-registry >/dev/null 2>&1 || true

# The static native image's target (scripts/images.sh adds it too, with a clear error).
rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl \
    || rustup target add x86_64-unknown-linux-musl \
    || echo "setup: warning: cannot add rustup target x86_64-unknown-linux-musl: make images will fail" >&2

# nx-27017: a MongoDB wire-protocol server (SQLite-backed) for the recorder's tests; plus the
# manifest validators.
python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt

# playwright-core drives Debian's Chromium (no browser download).
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# The wasm32-wasip2 target (or Debian's fallback) is set up by scripts/build-wasm.sh.
echo "setup: done"
