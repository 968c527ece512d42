#!/usr/bin/env bash
# drill-kill-pod.sh [--force] [--app webdb|webnodb]
#
# Deletes one web pod while curl loops hit the page through the Ingress, waits
# until the Deployment has all replicas available again, and counts failures.
# Default: a normal delete (SIGTERM after the preStop sleep, as on an eviction).
# --force: --grace-period=0 --force, the closest kubectl gets to a crashed node
# or a killed process (the pod's endpoint stays until the API object is gone).
# Proves: losing one replica loses no request (other replicas keep serving, the
# Deployment replaces the pod, the PDB/HPA keep the count).
# Look at: FAILED (0 expected without --force; with --force, a few requests
# caught on the dying pod may fail unless the Ingress retries them: ingress-nginx
# retries idempotent GETs on connection errors by default), and the time until
# `available` is back to the HPA minimum.
# Exit status: 0 pass, 1 failures above MAX_FAILED, 2 usage/setup.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

force=()
app=webdb
while [ $# -gt 0 ]; do
    case "$1" in
        --force) force=(--grace-period=0 --force); shift ;;
        --app) app="${2:?--app needs webdb or webnodb}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
case "$app" in webdb|webnodb) ;; *) die "--app must be webdb or webnodb" ;; esac
need kubectl curl awk

want="$(kubectl -n "$NS" get deployment "$app" -o jsonpath='{.spec.replicas}')"
victim="$(kubectl -n "$NS" get pods -l "app.kubernetes.io/name=$app" -o jsonpath='{.items[0].metadata.name}')"
[ -n "$victim" ] || die "no pod of $app"
load_start
sleep 10
say "deleting pod $victim ${force[*]:-} ($want replicas wanted)"
start=$(date +%s)
kubectl -n "$NS" delete pod "$victim" "${force[@]}" --wait=false
sleep 2
until [ "$(kubectl -n "$NS" get deployment "$app" -o jsonpath='{.status.availableReplicas}')" = "$want" ]; do
    [ $(($(date +%s) - start)) -lt 300 ] || { say "not back to $want available replicas after 300 s"; break; }
    sleep 1
done
say "back to $want available replicas after $(($(date +%s) - start)) s"
sleep 10
load_stop
verdict
