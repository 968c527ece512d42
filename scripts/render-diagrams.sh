#!/usr/bin/env bash
# Renders docs/diagrams/*.dot to docs/diagrams/*.svg with Graphviz's `dot` (Debian
# `graphviz`, installed by scripts/setup.sh). Each SVG records the sha256 of its
# source, so tests/k8s/test_diagrams.py can tell a stale SVG from a fresh one.
#   scripts/render-diagrams.sh           render (commit the SVGs: the README shows them)
#   scripts/render-diagrams.sh --check   render into a temporary directory; exit 1 if
#                                        a committed SVG differs
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$repo/docs/diagrams"

check=0
case "${1:-}" in
    "") ;;
    --check) check=1 ;;
    *) sed -n '2,8s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
command -v dot >/dev/null || { echo "render-diagrams: needs Graphviz's dot (apt-get install graphviz)" >&2; exit 2; }

out="$dir"
if [ "$check" = 1 ]; then
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
fi
stale=0
count=0
for src in "$dir"/*.dot; do
    name="$(basename "$src" .dot)"
    hash="$(sha256sum "$src" | cut -d' ' -f1)"
    svg="$(dot -Tsvg "$src")"
    # line 1 is the XML declaration; the marker goes right after it
    { printf '%s\n' "$svg" | head -n 1
      printf '<!-- source: docs/diagrams/%s.dot sha256:%s -->\n' "$name" "$hash"
      printf '%s\n' "$svg" | tail -n +2; } >"$out/$name.svg"
    count=$((count + 1))
    if [ "$check" = 1 ] && ! cmp -s "$out/$name.svg" "$dir/$name.svg"; then
        echo "render-diagrams: docs/diagrams/$name.svg is not the rendering of $name.dot: run scripts/render-diagrams.sh" >&2
        stale=1
    fi
done
[ "$check" = 1 ] || echo "render-diagrams: $count SVGs in docs/diagrams"
exit "$stale"
