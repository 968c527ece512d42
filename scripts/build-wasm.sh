#!/usr/bin/env bash
# Builds every Wasm component (and the test and benchmark fixtures) with the `wasm` profile (Cargo.toml:
# opt-level "z", LTO; then wasm-opt -Oz via scripts/wasm-ld-opt) into target/wasm32-wasip2/wasm/,
# where spin.toml expects them.
#
#   1. rustup's wasm32-wasip2 target, added if missing: what every Spin user has (`spin build`).
#      The output is a real component (no preview1 adapter at load or run time).
#   2. Otherwise Debian's rustc-web + rust-web-src + wasi-libc, building std with -Zbuild-std
#      (works offline; see ../shared/notes/wasm-toolchain.md). Debian's wasi-libc has no WASI 0.2
#      build, so this path makes wasip1 core modules; they are copied to the paths spin.toml names
#      and the runner (like Spin) turns them into components with the preview1 adapter at load.
#
# WASM_TOOLCHAIN=rustup|debian forces one path. Prints which toolchain and target it used.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(page counter recorder misbehave hello)
out=target/wasm32-wasip2/wasm
pkg_args=()
for p in "${packages[@]}"; do pkg_args+=(-p "$p"); done
choice=${WASM_TOOLCHAIN:-auto}

rustup_ready() {
    command -v rustup >/dev/null 2>&1 || return 1
    rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 && return 0
    echo "build-wasm: adding rustup target wasm32-wasip2" >&2
    timeout 120 rustup target add wasm32-wasip2 >&2
}

debian_ready() {
    [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ] \
        && [ -f /usr/lib/wasm32-wasi/libc.a ]
}

install_debian() {
    echo "build-wasm: installing Debian's rustc-web, rust-web-src, wasi-libc, lld" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq rustc-web cargo-web rust-web-src wasi-libc lld-22 >&2 \
        || $sudo apt-get install -y -qq rustc-web cargo-web rust-web-src wasi-libc lld >&2
}

if [ "$choice" = rustup ] || { [ "$choice" = auto ] && rustup_ready; }; then
    cargo build --profile wasm --target wasm32-wasip2 "${pkg_args[@]}"
    used="rustup $(rustc --version | cut -d' ' -f2), target wasm32-wasip2 (components)"
elif [ "$choice" = debian ] || [ "$choice" = auto ]; then
    debian_ready || install_debian
    RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
        RUSTFLAGS="-L /usr/lib/wasm32-wasi -C link-self-contained=no" \
        CARGO_TARGET_DIR=target/wasm-debian \
        /usr/bin/cargo build --profile wasm -Zbuild-std=std,panic_abort --target wasm32-wasip1 "${pkg_args[@]}"
    mkdir -p "$out"
    for p in "${packages[@]}"; do
        cp "target/wasm-debian/wasm32-wasip1/wasm/$p.wasm" "$out/$p.wasm"
    done
    used="Debian $(/usr/bin/rustc --version | cut -d' ' -f2) (rustc-web, -Zbuild-std, wasi-libc), target wasm32-wasip1 (core modules: the runner and Spin adapt them at load)"
else
    echo "build-wasm: WASM_TOOLCHAIN must be rustup or debian, got '$choice'" >&2
    exit 2
fi

echo "build-wasm: built with $used:"
for p in "${packages[@]}"; do
    printf '  %-10s %8d bytes  %s\n' "$p" "$(stat -c %s "$out/$p.wasm")" "$out/$p.wasm"
done
