"""Draws the intake benchmark's latency against offered load.

    .venv/bin/python -m benchmarks.intake | tee intake.out
    .venv/bin/python -m benchmarks.chart intake.out [-o docs/performance-intake.png]

Reads the last `{"benchmark": "intake", ...}` line of the file (or of stdin with
`-`): p50 and p99 of each open-loop phase against the rate offered, the
saturating throughputs (closed loop) as vertical lines, the p99 target as a
horizontal one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "performance-intake.png"
COLOURS = {"native": "tab:blue", "envoy": "tab:orange", "echo": "tab:gray"}


def read_report(source: str) -> dict[str, Any]:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    for line in reversed(text.splitlines()):
        if line.startswith("{") and '"benchmark":"intake"' in line.replace(" ", ""):
            report: dict[str, Any] = json.loads(line)
            return report
    raise SystemExit(f"no intake benchmark line in {source}")


def draw(report: Mapping[str, Any], output: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    series: dict[str, list[Mapping[str, Any]]] = {}
    for point in report["sweep"]:
        series.setdefault(point["series"], []).append(point)
    for name, points in series.items():
        ordered = sorted(points, key=lambda p: p["offered_per_s"])
        x = [p["offered_per_s"] for p in ordered]
        colour = COLOURS.get(name)
        ax.plot(x, [p["p50_ms"] for p in ordered], "o--", color=colour, label=f"{name} p50")
        ax.plot(x, [p["p99_ms"] for p in ordered], "o-", color=colour, label=f"{name} p99")
    for phase in report["phases"]:
        if phase["loop"] != "closed" or phase["name"].startswith("first"):
            continue
        kind = phase["name"].split()[0]
        ax.axvline(
            phase["throughput"],
            color=COLOURS.get(kind, "tab:green"),
            linestyle=":",
            linewidth=1,
        )
        ax.annotate(
            f"{phase['name']} max {phase['throughput']:,.0f}/s",
            (phase["throughput"], 0.02),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            xytext=(2, 2),
            textcoords="offset points",
            va="bottom",
        )
    target = report["targets"]["p99_ms_at_80_percent"]
    ax.axhline(target, color="tab:red", linewidth=1)
    ax.annotate(
        f"p99 target {target:g} ms",
        (0.99, target),
        xycoords=("axes fraction", "data"),
        ha="right",
        va="bottom",
        fontsize=7,
        color="tab:red",
    )
    ax.set_yscale("log")
    ax.set_xlim(left=0)
    ax.set_xlabel("offered load (answers per second, open loop)")
    ax.set_ylabel("latency (ms, from when the call was due)")
    machine = report.get("machine", {})
    ax.set_title(
        f"SubmitAnswer latency against load ({machine.get('cpus', '?')} cores, "
        f"{report['config']['workers']} load processes)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chart", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("report", help="a file with the benchmark's output, or - for stdin")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    draw(read_report(args.report), args.output)
    print(args.output)


if __name__ == "__main__":
    main()
