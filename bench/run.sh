#!/usr/bin/env bash
# Cold start and throughput, Wasm (visits-runner) vs native (visits-native), the plots, then the
# layered benchmark (bench/layers.py: its table goes into README.md).
# Results: bench/results/*.csv and *.svg, plus machine.txt saying where they were measured.
set -euo pipefail
cd "$(dirname "$0")/.."
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "runner: $(stat -c %s target/dist/visits-runner) bytes; native: $(stat -c %s target/dist/visits-native) bytes (dist profile)"
} > bench/results/machine.txt
python3 bench/coldstart.py "$@"
python3 bench/throughput.py
python3 bench/recorder_latency.py
python3 bench/plot.py
python3 bench/layers.py
