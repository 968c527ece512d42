#!/usr/bin/env bash
# Installs everything the build, the tests and the benchmarks need, from the package registries
# only (Debian, PyPI, npm, crates.io). Safe to run again. Run as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

# Servers and tools the end-to-end, browser and benchmark runs start on loopback.
# prometheus (with promtool): checks/tests monitoring/alerts.yml and scrapes the local replicas;
# graphviz: `dot` renders docs/diagrams; shellcheck: lints ops/cluster; nginx: the local replicas.
# buildah (FROM scratch images; vfs storage, chroot isolation), skopeo (copies images between OCI
# layouts and registries), docker-registry (CNCF distribution 2.8: the tests' local registry),
# musl-tools (musl-gcc: ring's C for the static x86_64-unknown-linux-musl visits-native).
# binaryen: wasm-opt, run on every component by scripts/wasm-ld-opt (-16 % size).
apt_packages=(redis-server redis-tools chromium wrk nginx prometheus graphviz shellcheck buildah skopeo docker-registry musl-tools binaryen)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: apt-get install ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packages may start system services (redis on 6379, nginx on 80, prometheus on 9090,
# docker-registry on 5000):
# stop and disable them; the tests and scripts/replicas.py start their own from generated configs.
for svc in redis-server nginx prometheus docker-registry; do
    $sudo service "$svc" stop >/dev/null 2>&1 || true
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done

# The static native image's target (scripts/images.sh adds it too, with a clear error).
rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl \
    || rustup target add x86_64-unknown-linux-musl \
    || echo "setup: warning: cannot add rustup target x86_64-unknown-linux-musl: make images will fail" >&2

# nx-27017: a MongoDB wire-protocol server (SQLite-backed) for the recorder's tests; plus the
# manifest validators.
python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt -r bench/requirements.txt

# playwright-core drives Debian's Chromium (no browser download).
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# The wasm32-wasip2 target (or Debian's fallback) is set up by scripts/build-wasm.sh.
echo "setup: done"
