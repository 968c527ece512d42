#!/usr/bin/env bash
# `make push REGISTRY=host:port [VERSION=v1]`: pushes
#   $REGISTRY/wasm-visits:$VERSION         the Spin OCI artifact, as `spin registry push` writes it
#                                          (visits-runner registry push; what SpinApps run)
#   $REGISTRY/wasm-visits-native:$VERSION  the native image (skopeo, from make images' OCI layout)
# and prints both digests. Plain HTTP (INSECURE=1) is the default for localhost, 127.0.0.1 and
# k3d registries (k3d-*), TLS otherwise; INSECURE=0/1 overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
REGISTRY=${REGISTRY:?usage: make push REGISTRY=host:port [VERSION=v1]}
VERSION=${VERSION:-v1}
case "$REGISTRY" in
    localhost*|127.*|k3d-*|*.localhost*) INSECURE=${INSECURE:-1} ;;
    *) INSECURE=${INSECURE:-0} ;;
esac
layout=target/images/wasm-visits-native
[ -f "$layout/index.json" ] || { echo "push: $layout is missing (make images)" >&2; exit 1; }

insecure=(); tls=true
if [ "$INSECURE" = 1 ]; then insecure=(--insecure); tls=false; fi

wasm_ref="$REGISTRY/wasm-visits:$VERSION"
out=$(target/release/visits-runner registry push "${insecure[@]}" "$wasm_ref")
wasm_digest=$(sed -n 's/^Pushed with digest //p' <<<"$out")
[ -n "$wasm_digest" ] || { echo "push: no digest in: $out" >&2; exit 1; }

native_ref="$REGISTRY/wasm-visits-native:$VERSION"
digestfile=$(mktemp)
trap 'rm -f "$digestfile"' EXIT
skopeo copy --quiet --dest-tls-verify="$tls" --digestfile "$digestfile" \
    "oci:$layout:$VERSION" "docker://$native_ref"
native_digest=$(cat "$digestfile")

echo "pushed $wasm_ref@$wasm_digest"
echo "pushed $native_ref@$native_digest"
