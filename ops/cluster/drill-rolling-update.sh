#!/usr/bin/env bash
# drill-rolling-update.sh [--version V] [--image IMAGE]
#
# Rolls webdb from the running version to V (default v2) while curl loops hit the
# page through the Ingress, then checks that every answer afterwards says V.
# Proves: a rolling update under load loses no request and no visit (zero
# non-200 answers; the Redis counter grew by every counted answer).
# How: sets `version` in the ConfigMap wasm-visits-config, then restarts webdb's
# pods: container edition `kubectl rollout restart` (or `set image` with --image),
# Wasm edition a new podAnnotation on the SpinApp (or a new spec.image with
# --image), which makes the spin-operator roll its Deployment.
# Look at: the FAILED count and its per-second breakdown. Container edition:
# expect 0 (maxUnavailable 0, minReadySeconds 5, preStop sleep). Wasm edition:
# the operator's Deployment keeps Kubernetes' defaults (25 %: at 3 replicas
# maxUnavailable 0, maxSurge 1) and has no preStop sleep unless
# k8s/cluster/wasm-pod-defaults is applied: failures right when an old pod
# stops are the endpoint-propagation race that the preStop sleep closes.
# Also: `kubectl -n wasm-visits get pods -w` in another terminal.
# Exit status: 0 pass, 1 failures above MAX_FAILED or visits lost, 2 usage/setup.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

version=v2
image=""
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version="${2:?--version needs a value}"; shift 2 ;;
        --image) image="${2:?--image needs a value}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
need kubectl curl awk

ed="$(edition)"
say "edition $ed; rolling webdb to version $version${image:+ (image $image)}"
before="$(visits_now)"
load_start
sleep 10   # a baseline before the roll

kubectl -n "$NS" patch configmap wasm-visits-config --type merge -p "{\"data\":{\"version\":\"$version\"}}"
if [ "$ed" = wasm ]; then
    if [ -n "$image" ]; then
        kubectl -n "$NS" patch spinapp webdb --type merge -p "{\"spec\":{\"image\":\"$image\"}}"
    else
        kubectl -n "$NS" patch spinapp webdb --type merge \
            -p "{\"spec\":{\"podAnnotations\":{\"wasm-visits/rolled-at\":\"$(date -u +%Y%m%dT%H%M%SZ)\"}}}"
    fi
else
    if [ -n "$image" ]; then
        kubectl -n "$NS" set image deployment/webdb "web=$image"
    else
        kubectl -n "$NS" rollout restart deployment/webdb
    fi
fi
sleep 2    # let the operator (Wasm) update its Deployment before we watch it
kubectl -n "$NS" rollout status deployment/webdb --timeout=300s
sleep 15   # old pods finish their preStop and grace period under load
load_stop
after="$(visits_now)"

status=0
check_counted "$before" "$after" || status=1
# every pod answers the new version now
stale=0
for _ in $(seq 1 20); do
    v="$(curl -s --max-time 5 -H 'accept: application/json' "$URL" | grep -o '"version": *"[^"]*"' | grep -o '"[^"]*"$' | tr -d '"')"
    [ "$v" = "$version" ] || stale=$((stale + 1))
done
say "answers after the roll with another version than $version: $stale of 20"
[ "$stale" -eq 0 ] || status=1
verdict || status=1
exit "$status"
