"""Envoy's own cost per request: the gateway rendered from envoy/envoy.yaml.tmpl in
front of the bare echo handler (benchmarks/_intake_echo.py answering as
SubmitAnswer), loaded by wrk (C, a few µs per request) with JSON SubmitAnswer
requests, each with a different player's token (as in a real quiz: Envoy
verifies every JWT, ES256). With the backend and the load generator nearly free,
the CPU Envoy spends per request is its capacity figure for the capacity plan.

    .venv/bin/python -m benchmarks.gateway                 # ~1 minute
    .venv/bin/python -m benchmarks.gateway --concurrency 1,16,64 --seconds 10

Needs wrk (`apt-get install wrk`); without it, says so and measures nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks._stack import run_cleanly
from devstack.gateway import EnvoyProcess, RateLimit, local_gateway, write_envoy_config
from devstack.infra import free_port
from services.identity.keys import ensure_dev_keys
from services.identity.tokens import Role, TokenIssuer

PATH = "/v1/quizzes/K7QX2M9A/answers"
BODY = '{"question_index": 42, "choice_index": 2}'
WRK_SCRIPT = """\
local tokens = {%s}
local i = 0
request = function()
  i = i %% #tokens + 1
  return wrk.format("POST", nil, {["Authorization"] = "Bearer " .. tokens[i],
    ["Content-Type"] = "application/json"}, '%s')
end
"""


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def wrk(url: str, script: Path, connections: int, seconds: float) -> dict[str, float]:
    """One wrk run (one thread): requests/s, latency percentiles, non-2xx count."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def percentile(name: str) -> float:
        value, unit = re.search(rf"{name}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {
        "requests": requests,
        "p50_ms": percentile("50"),
        "p99_ms": percentile("99"),
        "non_2xx": int(failed.group(1)) if failed else 0,
    }


async def measure(args: argparse.Namespace, folder: Path, port: int) -> list[dict[str, float]]:
    """wrk through Envoy to the echo listening on `port`, at each concurrency."""
    keys = folder / "keys"
    ensure_dev_keys(keys / "signing-key.pem", keys / "jwks.json")
    issuer = TokenIssuer.from_file(keys / "signing-key.pem", "quizmesh", "quizmesh")
    tokens = [issuer.issue(Role.PLAYER, f"player{i:05d}", 3600) for i in range(args.tokens)]
    script = folder / "answer.lua"
    script.write_text(WRK_SCRIPT % (",".join(f'"{t}"' for t in tokens), BODY))

    upstream = f"127.0.0.1:{port}"
    settings = local_gateway(
        dict.fromkeys(("quiz", "score", "leaderboard", "stream"), upstream),
        keys / "jwks.json",
        # Every token answers as fast as it can: no per-player limit applies.
        answer_limit=RateLimit(burst=1_000_000_000, refill=1_000_000_000),
    )
    config = write_envoy_config(folder / "envoy.yaml", settings)
    rows = []
    async with EnvoyProcess(config, log_file=folder / "envoy.log") as envoy:
        assert envoy.pid is not None
        proxy, backend = psutil.Process(envoy.pid), psutil.Process(args.echo_pid)
        url = envoy.base_url + PATH
        await asyncio.to_thread(wrk, url, script, max(args.concurrency), 2.0)  # warm-up
        for connections in args.concurrency:
            before = cpu_seconds(proxy), cpu_seconds(backend), time.monotonic()
            result = await asyncio.to_thread(wrk, url, script, connections, args.seconds)
            after = cpu_seconds(proxy), cpu_seconds(backend), time.monotonic()
            n = result["requests"]
            rows.append(
                {
                    "connections": connections,
                    "requests_per_s": round(n / (after[2] - before[2])),
                    **{k: v for k, v in result.items() if k != "requests"},
                    "envoy_us_per_request": round((after[0] - before[0]) / n * 1e6),
                    "backend_us_per_request": round((after[1] - before[1]) / n * 1e6),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,16,64", help="wrk connections, e.g. 1,16,64")
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency")
    parser.add_argument("--tokens", type=int, default=5000, help="distinct player tokens")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if shutil.which("wrk") is None:
        print("gateway: wrk is not installed (apt-get install wrk); nothing measured")
        print(json.dumps({"benchmark": "gateway", "skipped": "wrk not installed"}))
        return
    port = free_port()
    echo = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._intake_echo", "--port", str(port), "--as-score"],
        stdout=subprocess.PIPE,
    )
    try:
        assert echo.stdout is not None
        echo.stdout.readline()  # listening
        args.echo_pid = echo.pid
        with tempfile.TemporaryDirectory(prefix="quizmesh-gateway-") as folder:
            rows = run_cleanly(measure(args, Path(folder), port))
    finally:
        echo.terminate()
        echo.wait()
    print(
        f"Envoy (template config; a JWT on every request, {args.tokens:,} players' tokens, "
        "each verified once per Envoy worker, then cached) in front of a bare echo handler, wrk"
    )
    print(
        f"{'conns':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'envoy µs/req':>13} {'backend µs/req':>15} {'non-2xx':>8}"
    )
    for r in rows:
        print(
            f"{r['connections']:>6} {r['requests_per_s']:>8,} {r['p50_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['envoy_us_per_request']:>13,} "
            f"{r['backend_us_per_request']:>15,} {r['non_2xx']:>8}"
        )
    print(json.dumps({"benchmark": "gateway", "rows": rows}))


if __name__ == "__main__":
    main()
