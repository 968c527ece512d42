#!/bin/bash
# Wait for every member, initiate the replica set once, wait for a primary,
# then make sure the application user exists. Safe to run any number of times.
set -euo pipefail
ns="${POD_NAMESPACE:-wasm-visits}"
domain="${CLUSTER_DOMAIN:-cluster.local}"
count="${MONGO_MEMBERS:-3}"
auth=(-u "$MONGO_ROOT_USERNAME" -p "$MONGO_ROOT_PASSWORD" --authenticationDatabase admin --quiet)
hosts=""
for i in $(seq 0 $((count - 1))); do
  host="mongo-$i.mongo.$ns.svc.$domain:27017"
  hosts="${hosts:+$hosts,}$host"
  for attempt in $(seq 1 60); do
    if mongosh "mongodb://$host/admin?directConnection=true" "${auth[@]}" --eval 'db.adminCommand({ping: 1}).ok' >/dev/null 2>&1; then
      echo "member $host is up"; break
    fi
    [ "$attempt" = 60 ] && { echo "member $host did not come up" >&2; exit 1; }
    sleep 5
  done
done
mongosh "mongodb://mongo-0.mongo.$ns.svc.$domain:27017/admin?directConnection=true" "${auth[@]}" --file /scripts/rs-init.js
for attempt in $(seq 1 60); do
  if mongosh "mongodb://$hosts/admin?replicaSet=${MONGO_REPLICA_SET:-rs0}" "${auth[@]}" --eval 'if (!db.hello().isWritablePrimary) { quit(1) }' >/dev/null 2>&1; then
    break
  fi
  [ "$attempt" = 60 ] && { echo "no primary elected" >&2; exit 1; }
  sleep 2
done
mongosh "mongodb://$hosts/admin?replicaSet=${MONGO_REPLICA_SET:-rs0}" "${auth[@]}" --file /scripts/ensure-app-user.js
echo "replica set ready"
