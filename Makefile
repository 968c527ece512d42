# wasm-visits: one entry point. `make setup` once, then `make up` or `make test`.
.PHONY: setup wasm build up test test-unit test-browser test-k8s test-reliability soak lint bench clean

setup:            ## install servers, browser and tools (apt, pip, npm); root or sudo
	scripts/setup.sh

wasm:             ## build the Spin components for wasm32-wasip2 (rustup target, or Debian fallback)
	scripts/build-wasm.sh

build: wasm       ## components + the runner + the native edition, release mode
	cargo build --release -p visits-runner -p visits-native

up: build         ## run the app like `spin up`, on http://127.0.0.1:3000, zero infrastructure
	target/release/visits-runner up --listen 127.0.0.1:3000 --variable hostname=$$(hostname)

lint:
	cargo fmt --all --check
	cargo clippy --release --all-targets -- -D warnings
	cargo clippy --release --target wasm32-wasip2 -p page -p counter -p recorder -p misbehave -p spin-glue -- -D warnings

# `cargo test` builds visits-runner and visits-native itself (their integration tests need them),
# with the same features as the tests: one release build instead of two.
test-unit: wasm
	cargo test --release

test-browser: wasm
	@test -x target/release/visits-runner -a -x target/release/visits-native || $(MAKE) build
	cd tests/browser && npm test

test-k8s:
	scripts/validate-k8s.sh

# Hostile clients and lost data, both editions, real processes on loopback (tests/reliability).
test-reliability: build
	cd tests/reliability && python3 -m pytest -q -s

## the long form: 10,000-socket flood, then a 10-minute soak with RSS sampled (flat within 10 %)
soak: build
	cd tests/reliability && RELIABILITY_LONG=1 python3 -m pytest -q -s

## everything CI runs: lint, unit + integration + end-to-end (both editions), browser, manifests
test: lint test-unit test-browser test-k8s test-reliability

bench: build      ## cold start and throughput, Wasm vs native (writes bench/results/)
	bench/run.sh

clean:
	cargo clean
