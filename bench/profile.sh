#!/usr/bin/env bash
# A CPU flame graph of visits-runner serving one layer under load: perf record (DWARF unwinding
# through .eh_frame, so the release binary needs no frame pointers) while wrk runs, then
# inferno (make bench-tools) folds and draws it.
#
#   bench/profile.sh [label] [manifest] [path] [runner]     defaults: page spin.toml / target/release/visits-runner
#
# Writes bench/results/flame-<label>.svg and a flat top-40 (self time) in profile-<label>.txt.
# The Wasm code itself shows as one "[JIT]" frame per function without a perf map.
set -euo pipefail
cd "$(dirname "$0")/.."
label=${1:-page}
manifest=${2:-spin.toml}
path=${3:-/}
runner=${4:-target/release/visits-runner}
tools=target/tools/bin
[ -x "$tools/inferno-flamegraph" ] || { echo "profile: run make bench-tools first (inferno)" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$runner" up --quiet --listen "127.0.0.1:$port" -f "$manifest" --state-dir "$work/state" \
    --cache-dir target/bench-cache --variable records_backend=off >/dev/null 2>&1 &
pid=$!
for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$port$path" >/dev/null 2>&1 && break; sleep 0.05; done
wrk -t2 -c16 -d2s "http://127.0.0.1:$port$path" >/dev/null
wrk -t2 -c16 -d14s "http://127.0.0.1:$port$path" > "$work/wrk.txt" &
sleep 2
perf record -F 499 --call-graph dwarf,16384 -p "$pid" -o "$work/perf.data" -- sleep 8 2>/dev/null
wait
perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | grep '%' | head -40 > "bench/results/profile-$label.txt"
perf script -i "$work/perf.data" 2>/dev/null | "$tools/inferno-collapse-perf" \
    | "$tools/inferno-flamegraph" --title "visits-runner: $label ($manifest $path, wrk -t2 -c16)" \
    > "bench/results/flame-$label.svg"
echo "profile: $(grep Requests/sec "$work/wrk.txt") -> bench/results/flame-$label.svg, profile-$label.txt"
