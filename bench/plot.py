#!/usr/bin/env python3
"""Turns bench/results/*.csv into small SVG bar charts (standard library only)."""
import csv
import html
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def bars(title, unit, items, path):
    """items: [(label, value)] -> a horizontal bar chart."""
    width, left, bar_h, gap = 640, 200, 22, 10
    height = 50 + len(items) * (bar_h + gap)
    top = max(v for _, v in items) or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">',
           f'<text x="10" y="22" font-size="15" font-weight="bold">{html.escape(title)}</text>']
    for i, (label, value) in enumerate(items):
        y = 40 + i * (bar_h + gap)
        w = (width - left - 110) * value / top
        color = "#6b4fbb" if label.startswith("wasm") else "#2a7ab0"
        out.append(f'<text x="10" y="{y + 16}">{html.escape(label)}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
        out.append(f'<text x="{left + w + 6:.1f}" y="{y + 16}">{value:,.2f} {unit}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def read(name):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def main():
    cold = read("coldstart.csv")
    if cold:
        bars("Cold start: exec to first 200 on / (median, lower is better)", "ms",
             [(r["contender"], float(r["median_ms"])) for r in cold], os.path.join(RESULTS, "coldstart.svg"))
    tput = read("throughput.csv")
    if tput:
        bars("Throughput on / with wrk -t2 -c16 (higher is better)", "req/s",
             [(f'{r["edition"]} {r["backend"]}', float(r["rps"])) for r in tput], os.path.join(RESULTS, "throughput.svg"))
        bars("p99 latency on / at 16 connections (lower is better)", "ms",
             [(f'{r["edition"]} {r["backend"]}', float(r["p99_ms"])) for r in tput], os.path.join(RESULTS, "latency-p99.svg"))


if __name__ == "__main__":
    main()
