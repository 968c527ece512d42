# shellcheck shell=bash
# Shared by the drill scripts of ops/cluster (source it; do not run it).
# A drill runs against a real cluster (k3d, see runtime-class/README.md) where one
# of the k8s/overlays is applied, drives load through the Ingress with curl, and
# prints what it measured. Settings (environment):
#   NS        namespace of the app                       (wasm-visits)
#   URL       the page behind the Ingress                (http://webdb.visits.localhost:8081/)
#   WORKERS   concurrent curl loops                      (4)
#   MAX_FAILED  failed requests the drill tolerates      (0)
set -euo pipefail

NS="${NS:-wasm-visits}"
URL="${URL:-http://webdb.visits.localhost:8081/}"
WORKERS="${WORKERS:-4}"
MAX_FAILED="${MAX_FAILED:-0}"
LOAD_DIR=""
LOAD_PIDS=()

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf 'drill: %s\n' "$*" >&2; exit 2; }

need() {
    local c
    for c in "$@"; do command -v "$c" >/dev/null || die "needs $c on PATH"; done
    # %header{} in curl -w needs curl 7.84 or newer
    curl -s -o /dev/null -w '%header{date}' "file:///dev/null" 2>/dev/null >/dev/null \
        || die "needs curl >= 7.84 (-w %header{...})"
    kubectl -n "$NS" get deployment webdb >/dev/null || die "no Deployment webdb in namespace $NS: apply an overlay first (k8s/README.md)"
}

# Usage text = the script's leading comment block (after the shebang).
usage() { sed -n '2,/^[^#]/{/^# shellcheck/d;/^#/s/^# \{0,1\}//p}' "$0"; }

edition() {
    if kubectl -n "$NS" get spinapp webdb >/dev/null 2>&1; then echo wasm; else echo container; fi
}

# The visit count the page shows (each call is itself a visit).
visits_now() {
    curl -s --max-time 5 -H 'accept: application/json' "$URL" | grep -o '"visits": *[0-9]*' | grep -o '[0-9]*$' || echo ""
}

# load_start: WORKERS loops of GET $URL; each line of $LOAD_DIR/w<i> is
# "<unix-seconds> <status> <x-visits-degraded>" (status 000: no HTTP answer).
load_start() {
    LOAD_DIR="$(mktemp -d)"
    local i
    for i in $(seq 1 "$WORKERS"); do
        (
            while :; do
                printf '%s %s\n' "$(date +%s)" \
                    "$(curl -s -o /dev/null --max-time 5 -H 'accept: application/json' \
                        -w '%{http_code} %header{x-visits-degraded}' "$URL" || true)"
            done
        ) >"$LOAD_DIR/w$i" 2>/dev/null &
        LOAD_PIDS+=("$!")
    done
    trap load_abort EXIT
    say "load: $WORKERS workers on $URL (results in $LOAD_DIR)"
}

load_abort() { [ ${#LOAD_PIDS[@]} -eq 0 ] || kill "${LOAD_PIDS[@]}" 2>/dev/null || true; }

# load_stop: stops the workers and prints the outcome; sets FAILED, DEGRADED, TOTAL, COUNTED_OK.
load_stop() {
    load_abort
    wait "${LOAD_PIDS[@]}" 2>/dev/null || true
    LOAD_PIDS=()
    trap - EXIT
    local all="$LOAD_DIR/all"
    cat "$LOAD_DIR"/w* >"$all"
    TOTAL=$(wc -l <"$all")
    FAILED=$(awk '$2 != 200' "$all" | wc -l)
    DEGRADED=$(awk '$2 == 200 && NF > 2' "$all" | wc -l)
    # answered 200 and the counter took part: a counted visit
    COUNTED_OK=$(awk '$2 == 200 && $3 !~ /counter/' "$all" | wc -l)
    say "load: $TOTAL requests, $FAILED failed (non-200 or no answer), $DEGRADED degraded (200 with x-visits-degraded)"
    if [ "$FAILED" -gt 0 ]; then
        say "failures by status and second (first 20):"
        awk '$2 != 200 {print $1, $2}' "$all" | sort | uniq -c | head -20
    fi
}

# check_counted BEFORE AFTER: the counter must have grown by every counted visit
# (+1: the read that gave AFTER is a visit too). Fewer means lost visits.
check_counted() {
    local before="$1" after="$2"
    if [ -z "$before" ] || [ -z "$after" ]; then
        say "visit count unreadable (before '$before', after '$after'): cannot check lost visits"
        return 1
    fi
    local grown=$((after - before - 1))
    say "counter grew by $grown; the load got $COUNTED_OK answers that counted"
    if [ "$grown" -lt "$COUNTED_OK" ]; then
        say "LOST: $((COUNTED_OK - grown)) visits answered as counted are missing from Redis"
        return 1
    fi
}

verdict() {
    if [ "$FAILED" -le "$MAX_FAILED" ]; then
        say "PASS: $FAILED failed requests (allowed: $MAX_FAILED)"
    else
        say "FAIL: $FAILED failed requests (allowed: $MAX_FAILED)"
        return 1
    fi
}
