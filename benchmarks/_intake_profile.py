"""py-spy profiles of a server process during a benchmark phase, and where they say
the time went.

    .venv/bin/python -m benchmarks._intake_profile PROFILE.txt [--top 25] [--part NAME]
    .venv/bin/python -m benchmarks._intake_profile PROFILE.perf

reads a raw (collapsed-stack) py-spy profile and prints where the samples went by
part of a SubmitAnswer (CATEGORIES), then the functions with the most samples, by
own time (the frame on top of the stack) and by inclusive time; or a perf
recording (CPU time by shared object and symbol).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from benchmarks._stack import py_spy_command

# "function (path/to/file.py:123)" -> "function (file.py)": lines split one function.
_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


async def record(pid: int, seconds: float, output: Path, native: bool = False) -> int:
    """Samples `pid` and its children for `seconds` into a raw collapsed-stack file."""
    argv = [
        py_spy_command(),
        "record",
        *("--pid", str(pid)),
        *("--duration", str(max(1, round(seconds)))),
        *("--rate", "250"),
        *("--format", "raw"),
        *("--output", str(output)),
        "--subprocesses",
        "--nolineno",
        # Only the thread holding the GIL: where the Python-bound server spends it.
        "--gil",
    ]
    if native:
        argv.append("--native")
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    if process.returncode:
        print(f"py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
    return process.returncode or 0


# The part of the work a sample belongs to: the first of these patterns found in
# its stack, from the top (innermost frame) down. Names and package paths.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("token verification", ("KnownTokens", "TokenVerifier", "jwt/", "cryptography/")),
    ("metrics", ("prometheus_client/",)),
    ("JetStream record", ("nats/", "_record", "score/answer_log.py")),
    ("Redis script", ("redis/", "AnswerBook", "core/pipeline.py")),
    (
        "interceptor (services/mesh)",
        ("ErrorInterceptor", "_Handling", "_parser", "core/validation.py", "core/tracing.py"),
    ),
    ("handler (rest)", ("ScoreService", "score/store.py", "score/batch.py")),
)
OTHER = "grpc + event loop"


async def perf_record(pid: int, seconds: float, output: Path) -> int:
    """CPU-time samples (perf's cpu-clock: only while running, unlike py-spy's
    wall-clock samples, which a busy machine skews towards wherever the process
    gets preempted) of `pid` and its threads, for the split by library."""
    perf = shutil.which("perf")
    if perf is None:
        return 1
    process = await asyncio.create_subprocess_exec(
        perf,
        "record",
        *("-F", "499", "-p", str(pid), "-o", str(output), "--", "sleep", str(seconds)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait()


def perf_summary(path: Path, top: int = 15) -> str:
    """Shares of CPU samples by shared object and by symbol (perf report)."""
    perf = shutil.which("perf") or "perf"
    out = []
    for key in ("dso", "sym"):
        report = subprocess.run(
            [perf, "report", "-i", str(path), "--stdio", "--sort", key, "--percent-limit", "1"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        rows = [line for line in report.splitlines() if line.strip() and not line.startswith("#")]
        out.append(f"  by {key}:")
        out += [f"    {line.strip()}" for line in rows[:top]]
    return "\n".join(out)


def _short(frame: str) -> str:
    """`fn (a/b/c/d/file.py:12)` -> `fn (c/d/file.py)`: enough to tell packages apart."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = "/".join(match["file"].split("/")[-3:])
    return f"{match['fn']} ({file})"


def category(frames: Sequence[str]) -> str:
    for frame in reversed(frames):
        for name, patterns in CATEGORIES:
            if any(p in frame for p in patterns):
                return name
    return OTHER


def read(
    path: Path, under: str = "", part: str = ""
) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    """Sample counts per category, own and inclusive per function, and the total;
    with `under`, only stacks passing through a function whose name contains it."""
    parts: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";")]
        # The thread and process frames py-spy puts first are not functions.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames or (under and not any(under in f for f in frames)):
            continue
        if part and category(frames) != part:
            continue
        n = int(count)
        total += n
        parts[category(frames)] += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    return parts, own, inclusive, total


def summary(path: Path, top: int = 25, under: str = "", part: str = "") -> str:
    parts, own, inclusive, total = read(path, under, part)
    if not total:
        return f"{path}: no samples"
    lines = [f"{path.name}: {total} samples" + (f" under {under}" if under else "")]
    lines.append("  by part:")
    for name, n in parts.most_common():
        lines.append(f"    {100 * n / total:5.1f}%  {name}")
    for title, counts in (("own", own), ("inclusive", inclusive)):
        lines.append(f"  top {top} by {title} time:")
        for fn, n in counts.most_common(top):
            lines.append(f"    {100 * n / total:5.1f}%  {fn}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--under", default="", help="only stacks through this function")
    parser.add_argument("--part", default="", help="only samples of this part (see CATEGORIES)")
    args = parser.parse_args(argv)
    if args.profile.suffix == ".perf":
        print(perf_summary(args.profile, args.top))
    else:
        print(summary(args.profile, args.top, args.under, args.part))


if __name__ == "__main__":
    main()
