#!/usr/bin/env bash
# Installs everything the build, the tests and the benchmarks need, from the package registries
# only (Debian, PyPI, npm, crates.io). Safe to run again. Run as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

# Servers and tools the end-to-end, browser and benchmark runs start on loopback.
# prometheus: promtool checks/tests monitoring/alerts.yml; graphviz: `dot` renders docs/diagrams;
# shellcheck: lints the cluster drill scripts (ops/cluster).
apt_packages=(redis-server redis-tools chromium wrk prometheus graphviz shellcheck)
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
# Debian's prometheus package starts a server on :9090; tests and drills start their own.
$sudo service prometheus stop >/dev/null 2>&1 || true

# nx-27017: a MongoDB wire-protocol server (SQLite-backed) for the recorder's tests; plus the
# manifest validators.
python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt

# playwright-core drives Debian's Chromium (no browser download).
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# The wasm32-wasip2 target (or Debian's fallback) is set up by scripts/build-wasm.sh.
echo "setup: done"
