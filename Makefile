# wasm-visits: one entry point. `make setup` once, then `make up` or `make test`.
.PHONY: setup wasm build dist up test test-unit test-fuzz-corpus fuzz bench-layers bench-tools test-browser test-k8s test-images test-drill test-reliability soak lint bench bench-pull images push deploy-manifests diagrams clean replicas drill

setup:            ## install servers, browser and tools (apt, pip, npm); root or sudo
	scripts/setup.sh

wasm:             ## build the Spin components for wasm32-wasip2 (rustup target, or Debian fallback)
	scripts/build-wasm.sh

# The whole workspace with its test targets: `-p visits-runner` alone would resolve dependency
# features differently from `cargo test` and rebuild wasmtime & co (~6 min).
build: wasm       ## components + the runner + the native edition, release mode
	cargo build --release --all-targets

# The benchmarked binaries: the `dist` profile (fat LTO, one codegen unit; see the root
# Cargo.toml), in target/dist/. Slow to link (~10 min from clean), so tests use `build`.
dist: wasm        ## the runner and visits-native with LTO (benchmarks, local use), in target/dist
	cargo build --profile dist -p visits-runner -p visits-native

up: build         ## run the app like `spin up`, on http://127.0.0.1:3000, zero infrastructure
	target/release/visits-runner up --listen 127.0.0.1:3000 --variable hostname=$$(hostname)

lint:
	cargo fmt --all --check
	cargo clippy --release --all-targets -- -D warnings
	cargo clippy --release --target wasm32-wasip2 -p page -p counter -p recorder -p misbehave -p hello -p spin-glue -- -D warnings
	cargo fmt --manifest-path fuzz/Cargo.toml --check
	cargo clippy --release --manifest-path fuzz/Cargo.toml --no-default-features --all-targets --target-dir target/fuzz-replay -- -D warnings

# `cargo test` builds visits-runner and visits-native itself (their integration tests need them),
# with the same features as the tests: one release build instead of two.
test-unit: wasm
	cargo test --release

test-browser: wasm
	@test -x target/release/visits-runner -a -x target/release/visits-native || $(MAKE) build
	cd tests/browser && npm test

test-k8s:
	scripts/validate-k8s.sh

# The short drills (scripts/drill.py), both editions: 3 replicas behind nginx under load.
test-drill: wasm
	@test -x target/release/visits-runner -a -x target/release/visits-native || $(MAKE) build
	scripts/drill.py --edition wasm
	scripts/drill.py --edition native


EDITION ?= wasm
replicas: build   ## N replicas (default 3, N=5) behind nginx, Redis, nx-27017, Prometheus; EDITION=native
	scripts/replicas.py --edition $(EDITION) $(if $(N),--replicas $(N))

drill: build      ## the long-form drills under load (EDITION=native, N=); prints the table
	scripts/drill.py --long --edition $(EDITION) $(if $(N),--replicas $(N))

diagrams:         ## render docs/diagrams/*.dot to SVG (Graphviz); commit the SVGs
	scripts/render-diagrams.sh

# A local registry round trip of both images (build, push, pull by digest, run, GET /).
test-images: images
	@test -x target/release/visits-runner || $(MAKE) build
	python3 -m pytest -q tests/images

## everything CI runs: lint, unit + integration + end-to-end (both editions), browser, manifests,
## images, drills, hostile clients
test: lint test-unit test-fuzz-corpus test-browser test-k8s test-images test-drill test-reliability

VERSION ?= v1
images: wasm      ## the Wasm and native images with buildah (no Docker); prints their sizes
	VERSION=$(VERSION) scripts/images.sh

push: images      ## REGISTRY=host:port [VERSION=v1]: the Spin artifact + the native image
	@test -x target/release/visits-runner || $(MAKE) build
	REGISTRY=$(REGISTRY) VERSION=$(VERSION) scripts/push.sh

deploy-manifests: ## REGISTRY=host:port [VERSION=v1]: ready-to-apply YAML in target/deploy/
	REGISTRY=$(REGISTRY) VERSION=$(VERSION) scripts/deploy-manifests.sh

# Hostile clients and lost data, both editions, real processes on loopback (tests/reliability).
test-reliability: build
	cd tests/reliability && python3 -m pytest -q -s

## the long form: 10,000-socket flood, then a 10-minute soak with RSS sampled (flat within 10 %)
soak: build
	cd tests/reliability && RELIABILITY_LONG=1 python3 -m pytest -q -s

# Every saved fuzz input (fuzz/corpus, fuzz/regressions, the Spin conformance cases) through the
# fuzz targets' checks, on stable Rust: no nightly needed. fuzz/ is its own workspace.
test-fuzz-corpus:
	cargo test --release --manifest-path fuzz/Cargo.toml --no-default-features --target-dir target/fuzz-replay

## fuzz both targets (nightly + cargo-fuzz) for FUZZ_SECONDS each, in parallel; fuzz/README.md
FUZZ_SECONDS ?= 600
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

## wasmtime-cli (the anchor of bench/layers.py, same version as the runner's) and inferno
## (flame graphs for bench/profile.sh), built into target/tools
bench-tools:
	@test -x target/tools/bin/wasmtime || CARGO_TARGET_DIR=target/wasmtime-cli cargo install --locked wasmtime-cli --version 48.0.8 --root target/tools
	@test -x target/tools/bin/inferno-flamegraph || cargo install --locked inferno --root target/tools

bench-layers: dist ## the layered benchmark: handler, chaining hop, page per backend, cold start
	python3 bench/layers.py

bench: dist       ## cold start, throughput and the layers, Wasm vs native (writes bench/results/)
	bench/run.sh

bench-pull: images ## pull from a local registry + start + first 200, both editions
	@test -x target/release/visits-runner || $(MAKE) build
	python3 bench/pull_coldstart.py

clean:
	cargo clean
