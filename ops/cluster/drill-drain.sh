#!/usr/bin/env bash
# drill-drain.sh NODE [--timeout SECONDS]
#
# Drains one node under load (kubectl drain: evictions, which honour the
# PodDisruptionBudgets), reports what moved and what the budgets held back,
# then uncordons it.
# Proves: web pods leave one at a time (PDB maxUnavailable 1) with no failed
# request; a single Redis or standalone MongoDB on that node is NOT evicted
# (PDB maxUnavailable 0): the drain times out on it, by design, and tells you
# to move it in a planned window (`kubectl -n wasm-visits delete pod redis-0`).
# A MongoDB replica-set member is evicted only while the 2 others are Ready.
# Look at: "Cannot evict pod as it would violate the pod's disruption budget"
# lines, FAILED (0 expected), `kubectl get pdb -n wasm-visits` (ALLOWED
# DISRUPTIONS). Needs a cluster with 2+ schedulable nodes (k3d --agents 2).
# Exit status: 0 no failed request, 1 otherwise, 2 usage/setup.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

node="${1:-}"
case "$node" in -h|--help) usage; exit 0 ;; ""|-*) usage >&2; exit 2 ;; esac
shift
timeout=120
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) timeout="${2:?--timeout needs seconds}"; shift 2 ;;
        *) usage >&2; exit 2 ;;
    esac
done
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout takes seconds"
need kubectl curl awk
kubectl get node "$node" >/dev/null || die "no node $node (kubectl get nodes)"

kubectl -n "$NS" get pdb
kubectl -n "$NS" get pods -o wide --field-selector "spec.nodeName=$node"
load_start
sleep 10
say "draining $node (timeout $timeout s)"
drained=0
kubectl drain "$node" --ignore-daemonsets --delete-emptydir-data --timeout="${timeout}s" && drained=1
say "drain $( [ "$drained" = 1 ] && echo finished || echo 'stopped (budgets held pods back: see above)')"
kubectl -n "$NS" get pods -o wide
sleep 10
load_stop
kubectl uncordon "$node"
verdict
