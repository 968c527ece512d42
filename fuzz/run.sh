#!/usr/bin/env bash
# Fuzzes both targets in parallel for $1 seconds each (default 600), then minimizes each corpus
# (cargo fuzz cmin) so fuzz/corpus stays small enough to commit. Needs nightly Rust and
# cargo-fuzz (`rustup toolchain install nightly && cargo install cargo-fuzz`). A crash stops
# its target and is written to fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/
# once fixed, so make test-fuzz-corpus replays it for good.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
common=(-O --target-dir target/fuzz)
mkdir -p target/fuzz-logs fuzz/corpus/manifest fuzz/corpus/request
cargo +nightly fuzz build "${common[@]}"
run() {
    local target=$1
    shift
    cargo +nightly fuzz run "${common[@]}" "$target" "fuzz/corpus/$target" "$@" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "${extra[@]}" > "target/fuzz-logs/$target.log" 2>&1
}
extra=(-dict=fuzz/manifest.dict -max_len=8192)
run manifest tests/spin-conformance &
m=$!
extra=(-max_len=4096)
run request &
r=$!
status=0
wait $m || { echo "fuzz: manifest found a failure: target/fuzz-logs/manifest.log" >&2; status=1; }
wait $r || { echo "fuzz: request found a failure: target/fuzz-logs/request.log" >&2; status=1; }
for t in manifest request; do
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)" "target/fuzz-logs/$t.log" | sed "s/^/$t: /" || true
    cargo +nightly fuzz cmin "${common[@]}" "$t" "fuzz/corpus/$t" > "target/fuzz-logs/$t-cmin.log" 2>&1
    echo "$t: corpus $(find "fuzz/corpus/$t" -type f | wc -l) inputs after cmin"
done
exit $status
