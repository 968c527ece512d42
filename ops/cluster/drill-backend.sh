#!/usr/bin/env bash
# drill-backend.sh redis|mongo [--down SECONDS] [--member N]
#
# Takes a backend away under load and brings it back: scales the StatefulSet
# (redis or mongo) to 0, waits SECONDS (default 30), scales it back and waits
# until it is Ready, keeps the load 30 s more, and reports each phase.
# --member N (MongoDB replica set): delete only pod mongo-N instead (N=0 is the
# preferred primary): the set elects another primary, the recorder follows.
# Proves / shows: what visitors get while a backend is gone, and that the app
# comes back by itself (no web pod restart). The page itself degrades (200,
# "counter unavailable" / "records unavailable", x-visits-degraded), BUT the
# readiness probe (/healthz) fails too: after 3 failed probes (~15 s) every
# webdb pod (and, for Redis, every webnodb pod) leaves the Service, and the
# Ingress answers 503 until the backend is back. The drill prints both counts so
# you can see which one visitors met.
# Look at: the per-second failures (when do 503s start and stop), DEGRADED,
# `kubectl -n wasm-visits get endpointslices -l kubernetes.io/service-name=webdb`
# during the outage, and the BackendDown alert (monitoring/alerts.yml).
# Exit status: 0 when the app serves normally again at the end, 1 otherwise,
# 2 usage/setup. Failures during the outage are reported, not judged.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

backend="${1:-}"
case "$backend" in redis|mongo) shift ;; -h|--help) usage; exit 0 ;; *) usage >&2; exit 2 ;; esac
down=30
member=""
while [ $# -gt 0 ]; do
    case "$1" in
        --down) down="${2:?--down needs seconds}"; shift 2 ;;
        --member) member="${2:?--member needs 0, 1 or 2}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
[[ "$down" =~ ^[0-9]+$ ]] || die "--down must be a number of seconds"
[ -z "$member" ] || [ "$backend" = mongo ] || die "--member is for mongo only"
need kubectl curl awk

replicas="$(kubectl -n "$NS" get statefulset "$backend" -o jsonpath='{.spec.replicas}')"
load_start
sleep 10
if [ -n "$member" ]; then
    say "deleting pod $backend-$member (the set keeps $((replicas - 1)) of $replicas members)"
    kubectl -n "$NS" delete pod "$backend-$member" --wait=false
else
    say "scaling statefulset/$backend $replicas -> 0 for $down s"
    kubectl -n "$NS" scale statefulset "$backend" --replicas=0
    sleep "$down"
    kubectl -n "$NS" get endpointslices -l kubernetes.io/service-name=webdb -o wide || true
    say "scaling statefulset/$backend back to $replicas"
    kubectl -n "$NS" scale statefulset "$backend" --replicas="$replicas"
fi
kubectl -n "$NS" rollout status statefulset "$backend" --timeout=300s
back=$(date +%s)
kubectl -n "$NS" wait --for=condition=available deployment/webdb --timeout=120s
sleep 30
load_stop
# the end state is what is judged: the last 10 s must be clean
recent=$(awk -v t="$(($(date +%s) - 10))" '$1 >= t && ($2 != 200 || NF > 2)' "$LOAD_DIR/all" | wc -l)
say "backend Ready again $(($(date +%s) - back)) s ago; non-clean answers in the last 10 s: $recent"
[ "$recent" -eq 0 ] || { say "FAIL: the app has not recovered"; exit 1; }
say "PASS: recovered without restarting a web pod"
