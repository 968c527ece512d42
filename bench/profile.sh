#!/usr/bin/env bash
# A CPU flame graph of visits-runner serving one layer under load: perf record (DWARF unwinding
# through .eh_frame, so the release binary needs no frame pointers) while wrk runs, then
# inferno (make bench-tools) folds and draws it.
#
#   bench/profile.sh [label] [manifest] [path] [visits-runner up args...]
#   defaults: page spin.toml / --variable records_backend=off; RUNNER=path picks another binary
#
# Writes bench/results/flame-<label>.svg and the top 40 functions by self time in
# profile-<label>.txt. Wasm code shows as "[unknown]"/JIT frames (no perf map).
set -euo pipefail
cd "$(dirname "$0")/.."
label=${1:-page}
manifest=${2:-spin.toml}
path=${3:-/}
shift 3 2>/dev/null || shift $#
extra=("$@")
[ ${#extra[@]} -gt 0 ] || [ "$manifest" != spin.toml ] || extra=(--variable records_backend=off)
runner=${RUNNER:-target/dist/visits-runner}
tools=target/tools/bin
[ -x "$tools/inferno-flamegraph" ] || { echo "profile: run make bench-tools first (inferno)" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
"$runner" up --quiet --listen "127.0.0.1:$port" -f "$manifest" --state-dir "$work/state" \
    --cache-dir target/bench-cache "${extra[@]}" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$port$path" >/dev/null 2>&1 && break; sleep 0.05; done
wrk -t2 -c16 -d2s "http://127.0.0.1:$port$path" >/dev/null
wrk -t2 -c16 -d12s "http://127.0.0.1:$port$path" > "$work/wrk.txt" &
load=$!
sleep 2
perf record -F 199 --call-graph dwarf,8192 -p "$pid" -o "$work/perf.data" -- sleep 8 2>/dev/null
wait "$load"
# Unwind once (perf script); the flame graph and the flat list both come from the folded stacks.
perf script --no-inline -i "$work/perf.data" 2>/dev/null | "$tools/inferno-collapse-perf" > "$work/folded"
"$tools/inferno-flamegraph" --title "visits-runner: $label ($manifest $path, wrk -t2 -c16)" \
    < "$work/folded" > "bench/results/flame-$label.svg"
# Self time: the leaf frame of every stack. Total time: every stack a frame is on, once.
out="bench/results/profile-$label.txt"
echo "# self time (top 40)" > "$out"
awk '{n=$NF; $NF=""; k=split($0, f, ";"); leaf=f[k]; sub(/ +$/, "", leaf); s[leaf]+=n; t+=n}
     END {for (l in s) printf "%6.2f%%  %s\n", 100*s[l]/t, l}' "$work/folded" \
    | sort -rn | sed -n '1,40p' >> "$out"
echo "# total time, with callees (top 60)" >> "$out"
awk '{n=$NF; $NF=""; sub(/ +$/, ""); k=split($0, f, ";"); delete seen
      for (i = 1; i <= k; i++) if (!(f[i] in seen)) { seen[f[i]] = 1; s[f[i]] += n }
      t += n}
     END {for (l in s) printf "%6.2f%%  %s\n", 100*s[l]/t, l}' "$work/folded" \
    | sort -rn | sed -n '1,60p' >> "$out"
echo "profile: $label: $(grep Requests/sec "$work/wrk.txt") -> bench/results/flame-$label.svg, profile-$label.txt"
