# wasm-visits: one entry point. `make setup` once, then `make up` or `make test`.
.PHONY: setup wasm build up test test-unit test-e2e test-browser test-k8s lint bench clean

setup:            ## install servers, browser and tools (apt, pip, npm); root or sudo
	scripts/setup.sh

wasm:             ## build the Spin components for wasm32-wasip1 (rustup target, or Debian fallback)
	scripts/build-wasm.sh

build: wasm       ## components + the runner + the native edition, release mode
	cargo build --release -p visits-runner -p visits-native

up: build         ## run the app like `spin up`, on http://127.0.0.1:3000, zero infrastructure
	target/release/visits-runner up --listen 127.0.0.1:3000

lint:
	cargo fmt --all --check
	cargo clippy --release --all-targets -- -D warnings
	cargo clippy --release --target wasm32-wasip1 -p page -p counter -p recorder -p misbehave -p spin-glue -- -D warnings

test-unit: build
	cargo test --release

test-browser: build
	cd tests/browser && npm test

test-k8s:
	scripts/validate-k8s.sh

## everything CI runs: lint, unit + integration + end-to-end (both editions), browser, manifests
test: build lint test-unit test-browser test-k8s

bench: build      ## cold start and throughput, Wasm vs native (writes bench/results/)
	bench/run.sh

clean:
	cargo clean
