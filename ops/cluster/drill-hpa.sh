#!/usr/bin/env bash
# drill-hpa.sh [--app webdb|webnodb] [--duration SECONDS] [--workers N]
#
# Drives enough load through the Ingress to push webdb's CPU past the HPA's 60 %
# target (default 32 curl loops for 180 s), polls the HPA every 10 s, then
# stops the load. Proves: the HPA scales the Deployment (the operator's for the
# Wasm edition, which has enableAutoscaling: true) above minReplicas 3 without
# failed requests, and the new pods are spread over nodes.
# Needs metrics-server (k3s/k3d ship it) and, for the Wasm edition, the shim on
# the systemd cgroup driver (pod CPU metrics): `kubectl top pods -n wasm-visits`
# must show numbers first.
# Look at: the CPU% / desired / current columns, the time to the first scale-up
# (15 s sync + metrics delay: expect 30-90 s), FAILED (0 expected), and
# `kubectl -n wasm-visits get pods -o wide` (NODE column). Scale-down takes
# 5 minutes after the load (the HPA's default stabilization window): not awaited.
# Exit status: 0 scaled up without failures, 1 otherwise, 2 usage/setup.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

app=webdb
duration=180
WORKERS="${WORKERS_HPA:-32}"
while [ $# -gt 0 ]; do
    case "$1" in
        --app) app="${2:?--app needs webdb or webnodb}"; shift 2 ;;
        --duration) duration="${2:?--duration needs seconds}"; shift 2 ;;
        --workers) WORKERS="${2:?--workers needs a number}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
case "$app" in webdb|webnodb) ;; *) die "--app must be webdb or webnodb" ;; esac
[[ "$duration" =~ ^[0-9]+$ && "$WORKERS" =~ ^[0-9]+$ ]] || die "--duration and --workers take numbers"
[ "$app" = webdb ] || URL="${URL/webdb./webnodb.}"
need kubectl curl awk
kubectl top pods -n "$NS" >/dev/null 2>&1 || die "no pod metrics (kubectl top pods): the HPA cannot scale; see runtime-class/README.md"

min="$(kubectl -n "$NS" get hpa "$app" -o jsonpath='{.spec.minReplicas}')"
load_start
start=$(date +%s)
first=""
peak=0
while [ $(($(date +%s) - start)) -lt "$duration" ]; do
    cpu="" desired="" current=""
    read -r cpu desired current < <(kubectl -n "$NS" get hpa "$app" -o \
        jsonpath='{.status.currentMetrics[0].resource.current.averageUtilization} {.status.desiredReplicas} {.status.currentReplicas}{"\n"}') || true
    say "cpu ${cpu:-?}%  desired ${desired:-?}  current ${current:-?}"
    if [ "${desired:-0}" -gt "$min" ] && [ -z "$first" ]; then first=$(($(date +%s) - start)); fi
    [ "${current:-0}" -le "$peak" ] || peak="$current"
    sleep 10
done
load_stop
kubectl -n "$NS" get pods -l "app.kubernetes.io/name=$app" -o wide
status=0
if [ -n "$first" ]; then
    say "first scale-up after $first s; peak $peak replicas (min $min)"
else
    say "FAIL: the HPA did not scale above $min in $duration s (more --workers, or check kubectl top)"
    status=1
fi
verdict || status=1
exit "$status"
