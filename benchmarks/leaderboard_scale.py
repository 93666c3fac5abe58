"""Benchmark of the leaderboard at scale: N players in one quiz, then the latency of
GetLeaderboard (top 10 and a page at rank ~N/2) and GetPlayerRank through the real
leaderboard service, against the raw Redis round trips those reads need.

    .venv/bin/python -m benchmarks.leaderboard_scale --players 1000000

The quiz and leaderboard services run as their own processes (as `make run` starts
them) on the shared Redis, NATS and MySQL/MariaDB, under a key prefix, NATS prefix
and database of the run's own, all removed after. Players join in two ways:
`--api-joins` through JoinQuiz (the measured API rate), the rest through the bulk
enrolment (`QuizStore.enrol_players`, what `quizctl enrol` runs), which writes
exactly what a join writes. Calls are sequential (one in flight), RPC and raw
measurements interleaved in rounds so that other load on the machine hits both
alike. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import psutil
from quizmesh.leaderboard.v1 import leaderboard_pb2, leaderboard_pb2_grpc
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc
from quizmesh.score.v1 import score_pb2
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from benchmarks._intake_echo import METHOD as ECHO_METHOD
from benchmarks._intake_echo import sample_request
from benchmarks._stack import ServiceStack, Space, add_server_args, py_spy, run_cleanly
from services.database.engine import create_engine
from services.live.keys import QuizKeys
from services.live.layout import points_of, reached_of
from services.live.quizzes import LiveQuizzes
from services.mesh.paging import Cursor, encode_cursor
from services.quiz.joining import ENROL_BATCH, Joining
from services.quiz.store import QuizStore

SERVICES = ("quiz", "leaderboard")
# The targets of issue 7.
TARGET_RATIO = 3.0
TARGET_ENROL_SECONDS = 60.0

Call = Callable[[], Awaitable[object]]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Latency:
    """Latencies of one kind of call, in seconds."""

    samples: list[float] = field(default_factory=list)

    def us(self, q: float) -> int:
        return round(percentile(self.samples, q) * 1e6)

    def summary(self) -> dict[str, int]:
        return {
            "calls": len(self.samples),
            "p50_us": self.us(0.5),
            "p99_us": self.us(0.99),
            "mean_us": round(statistics.fmean(self.samples) * 1e6),
        }


async def timed_calls(call: Call, count: int, into: Latency) -> None:
    clock = time.perf_counter
    for _ in range(count):
        started = clock()
        await call()
        into.samples.append(clock() - started)


async def api_joins(
    quiz: quiz_pb2_grpc.QuizServiceAsyncStub, quiz_id: str, count: int, concurrency: int
) -> tuple[list[str], float, Latency]:
    """`count` players through JoinQuiz, `concurrency` calls in flight."""
    latency = Latency()
    limit = asyncio.Semaphore(concurrency)
    clock = time.perf_counter

    async def one(i: int) -> str:
        async with limit:
            started = clock()
            joined = await quiz.JoinQuiz(
                quiz_pb2.JoinQuizRequest(quiz_id=quiz_id, nickname=f"api{i}")
            )
            latency.samples.append(clock() - started)
        return str(joined.player_id)

    started = clock()
    ids = list(await asyncio.gather(*(one(i) for i in range(count))))
    return ids, clock() - started, latency


class Progress:
    """One line of progress on stderr, at most every second."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.started = time.perf_counter()
        self.shown = 0.0

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.shown >= 1.0 or done == self.total:
            self.shown = now
            rate = done / max(now - self.started, 1e-9)
            print(
                f"\r  {self.label}: {done:,}/{self.total:,} ({rate:,.0f}/s)",
                end="\n" if done == self.total else "",
                file=sys.stderr,
                flush=True,
            )


async def token_before(redis: Redis, keys: QuizKeys, offset: int) -> str:
    """The page token whose page starts at `offset`: the cursor of the entry before."""
    ((player_id, packed),) = cast(
        list[tuple[str, float]],
        await redis.zrevrange(keys.board, offset - 1, offset - 1, withscores=True),
    )
    return encode_cursor(Cursor(points_of(packed), reached_of(packed), player_id))


@dataclass
class Reads:
    """The three reads, each as an RPC and as the raw Redis round trips it needs."""

    stub: leaderboard_pb2_grpc.LeaderboardServiceAsyncStub
    redis: Redis
    keys: QuizKeys
    quiz_id: str
    players: list[str]
    deep_offset: int
    # The page token of the page that starts at deep_offset (a cursor: the entry before).
    deep_token: str
    # A bare grpc.aio unary echo (benchmarks/_intake_echo.py), the floor of any RPC.
    echo: grpc.aio.UnaryUnaryMultiCallable[Any, Any]
    neighbours: int = 2
    page: int = 10

    def player(self) -> str:
        return random.choice(self.players)

    async def rpc_top(self) -> object:
        return await self.stub.GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(quiz_id=self.quiz_id, page_size=self.page)
        )

    async def rpc_deep(self) -> object:
        return await self.stub.GetLeaderboard(
            leaderboard_pb2.GetLeaderboardRequest(
                quiz_id=self.quiz_id,
                page_size=self.page,
                page_token=self.deep_token,
            )
        )

    async def rpc_rank(self) -> object:
        return await self.stub.GetPlayerRank(
            leaderboard_pb2.GetPlayerRankRequest(
                quiz_id=self.quiz_id, player_id=self.player(), neighbours=self.neighbours
            )
        )

    async def rpc_echo(self) -> object:
        return await self.echo(ECHO_REQUEST)

    async def _raw_page(self, offset: int) -> object:
        rows = cast(
            list[tuple[str, float]],
            await self.redis.zrevrange(
                self.keys.board, offset, offset + self.page - 1, withscores=True
            ),
        )
        return await self.redis.hmget(self.keys.nicknames, [pid for pid, _ in rows])

    async def raw_top(self) -> object:
        return await self._raw_page(0)

    async def raw_deep(self) -> object:
        return await self._raw_page(self.deep_offset)

    async def raw_rank(self) -> object:
        index = cast(int | None, await self.redis.zrevrank(self.keys.board, self.player()))
        assert index is not None
        start = max(0, index - self.neighbours)
        rows = cast(
            list[tuple[str, float]],
            await self.redis.zrevrange(
                self.keys.board, start, index + self.neighbours, withscores=True
            ),
        )
        return await self.redis.hmget(self.keys.nicknames, [pid for pid, _ in rows])


READS: dict[str, tuple[str, str]] = {
    # name: (what the RPC is, what the raw round trips are)
    "top10": (
        "GetLeaderboard page_size=10",
        "ZREVRANGE 0 9 WITHSCORES; HMGET nicknames",
    ),
    "deep": (
        "GetLeaderboard page at rank N/2",
        "ZREVRANGE N/2 +9 WITHSCORES; HMGET nicknames",
    ),
    "rank": (
        "GetPlayerRank neighbours=2",
        "ZREVRANK; ZREVRANGE rank-2 rank+2 WITHSCORES; HMGET nicknames",
    ),
    # Not a target: what any Python gRPC round trip costs, against the same raw reads.
    "floor": (
        "(floor) bare grpc.aio echo",
        "ZREVRANGE 0 9 WITHSCORES; HMGET nicknames",
    ),
}
ECHO_REQUEST = sample_request()


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def measure(
    reads: Reads, calls: int, rounds: int, server_pid: int
) -> tuple[dict[str, tuple[Latency, Latency]], dict[str, float]]:
    """p50/p99 of each read as RPC and raw, interleaved in `rounds` rounds, and the
    leaderboard process's CPU seconds per RPC of each kind."""
    pairs: dict[str, tuple[Call, Call]] = {
        "top10": (reads.rpc_top, reads.raw_top),
        "deep": (reads.rpc_deep, reads.raw_deep),
        "rank": (reads.rpc_rank, reads.raw_rank),
        "floor": (reads.rpc_echo, reads.raw_top),
    }
    results = {name: (Latency(), Latency()) for name in pairs}
    server_cpu = dict.fromkeys(pairs, 0.0)
    for rpc, raw in pairs.values():  # warm up connections, caches and script loads
        await timed_calls(rpc, 100, Latency())
        await timed_calls(raw, 100, Latency())
    per_round = max(1, calls // rounds)
    for _ in range(rounds):
        for name, (rpc, raw) in pairs.items():
            before = cpu_seconds(server_pid)
            await timed_calls(rpc, per_round, results[name][0])
            server_cpu[name] += cpu_seconds(server_pid) - before
            await timed_calls(raw, per_round, results[name][1])
    return results, {name: cpu / (per_round * rounds) for name, cpu in server_cpu.items()}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.api_joins > args.players:
        raise SystemExit("--api-joins must not exceed --players")
    with tempfile.TemporaryDirectory(prefix="lbscale-") as folder:
        stack = ServiceStack(Path(folder), Space.from_args("lbscale", args), backends=SERVICES)
        echo = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks._intake_echo", stdout=asyncio.subprocess.PIPE
        )
        try:
            assert echo.stdout is not None
            echo_port = int(await echo.stdout.readline())
            await stack.start()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{echo_port}") as channel:
                call = channel.unary_unary(
                    ECHO_METHOD,
                    request_serializer=score_pb2.SubmitAnswerRequest.SerializeToString,
                    response_deserializer=score_pb2.SubmitAnswerResponse.FromString,
                )
                return await run(stack, args, call)
        finally:
            echo.terminate()
            await echo.wait()
            await stack.close()


async def run(
    stack: ServiceStack, args: argparse.Namespace, echo: grpc.aio.UnaryUnaryMultiCallable[Any, Any]
) -> dict[str, Any]:
    quiz = stack.quiz
    created = await quiz.CreateQuiz(
        quiz_pb2.CreateQuizRequest(
            title="leaderboard at scale",
            questions=[
                quiz_pb2.QuestionSpec(text="q", choices=["a", "b"], correct_choice=1, points=1000)
            ],
        ),
        metadata=stack.host_metadata(),
    )
    quiz_id = str(created.quiz.quiz_id)
    print(f"leaderboard at scale: quiz {quiz_id}, {args.players:,} players", file=sys.stderr)

    joined, api_seconds, api_latency = await api_joins(
        quiz, quiz_id, args.api_joins, args.join_concurrency
    )
    bulk_count = args.players - len(joined)
    engine = create_engine(stack.database_url)
    redis = Redis.from_url(stack.space.redis_url, decode_responses=True)
    try:
        started = time.perf_counter()
        joining = Joining(QuizStore(engine), LiveQuizzes(redis, stack.space.key_prefix))
        enrolled = await joining.enrol(
            quiz_id,
            [f"bulk{i}" for i in range(bulk_count)],
            batch_size=args.enrol_batch,
            progress=Progress("bulk enrolment", bulk_count),
        )
        bulk_seconds = time.perf_counter() - started
        players = joined + enrolled
        counted = await quiz.GetQuiz(quiz_pb2.GetQuizRequest(quiz_id=quiz_id))
        assert counted.quiz.player_count == args.players, counted.quiz.player_count

        keys = QuizKeys(stack.space.key_prefix, quiz_id)
        deep_offset = args.players // 2
        reads = Reads(
            leaderboard_pb2_grpc.LeaderboardServiceStub(stack.channels["leaderboard"]),
            redis,
            keys,
            quiz_id,
            players,
            deep_offset=deep_offset,
            deep_token=await token_before(redis, keys, deep_offset),
            echo=echo,
        )
        results, server_cpu = await measure(
            reads, args.calls, args.rounds, stack.pid("leaderboard")
        )
        if args.profile:
            profiled: dict[str, Call] = {"top10": reads.rpc_top, "rank": reads.rpc_rank}
            for name, call in profiled.items():
                out = args.profile / f"leaderboard-{name}.raw"
                # With native frames, so grpc core shows (unwinding pauses the process:
                # it runs slower while profiled, its figures are not comparable).
                native = ("--rate", "500", "--native", "--threads")
                async with py_spy(stack.pid("leaderboard"), out, *native):
                    await timed_calls(call, args.calls, Latency())
                print(f"  profile of {name}: {out}", file=sys.stderr)
    finally:
        await redis.aclose()
        await engine.dispose()

    api_rate = len(joined) / api_seconds if joined else 0.0
    bulk_rate = bulk_count / bulk_seconds if bulk_count else 0.0
    result: dict[str, Any] = {
        "benchmark": "leaderboard_scale",
        "players": args.players,
        "database": make_url(stack.database_url).get_backend_name(),
        "service": "leaderboard and quiz services as own processes, native gRPC, 1 call in flight",
        "api_joins": len(joined),
        "api_join_concurrency": args.join_concurrency,
        "api_joins_per_s": round(api_rate),
        "api_join_p50_us": api_latency.us(0.5) if joined else None,
        "api_join_p99_us": api_latency.us(0.99) if joined else None,
        "api_join_seconds_for_all": round(args.players / api_rate, 1) if api_rate else None,
        "bulk_enrolled": bulk_count,
        "bulk_batch": args.enrol_batch,
        "bulk_seconds": round(bulk_seconds, 2),
        "bulk_players_per_s": round(bulk_rate),
        "bulk_seconds_for_all": round(args.players / bulk_rate, 1) if bulk_rate else None,
    }
    print()
    print(f"leaderboard at scale: {args.players:,} players in one quiz ({result['database']})")
    print(
        f"  JoinQuiz API:   {len(joined):>9,} joins   {api_seconds:8.2f} s  "
        f"{api_rate:>9,.0f} /s   ({args.join_concurrency} in flight; "
        f"p50 {result['api_join_p50_us']} us, p99 {result['api_join_p99_us']} us)"
    )
    print(
        f"  bulk enrolment: {bulk_count:>9,} players {bulk_seconds:8.2f} s  "
        f"{bulk_rate:>9,.0f} /s   (batch {args.enrol_batch}; "
        f"all {args.players:,} at this rate: {result['bulk_seconds_for_all']} s)"
    )
    print()
    print(
        f"  {'read':<34} {'RPC p50':>9} {'RPC p99':>9} {'raw p50':>9} {'raw p99':>9} "
        f"{'p99 x':>6} {'server CPU':>11}"
    )
    worst = 0.0
    for name, (rpc, raw) in results.items():
        ratio = percentile(rpc.samples, 0.99) / percentile(raw.samples, 0.99)
        if name != "floor":
            worst = max(worst, ratio)
        what, raw_what = READS[name]
        # The echo runs in a process of its own: the leaderboard's CPU is not its.
        cpu = f"{server_cpu[name] * 1e6:>6.0f} us/call" if name != "floor" else "     -"
        print(
            f"  {what:<34} {rpc.us(0.5):>6} us {rpc.us(0.99):>6} us "
            f"{raw.us(0.5):>6} us {raw.us(0.99):>6} us {ratio:>6.2f} {cpu}"
        )
        result[name] = {
            "rpc": rpc.summary(),
            "raw": raw.summary(),
            "raw_commands": raw_what,
            "p99_ratio": round(ratio, 2),
            "p50_ratio": round(percentile(rpc.samples, 0.5) / percentile(raw.samples, 0.5), 2),
            "server_cpu_us_per_call": round(server_cpu[name] * 1e6) if name != "floor" else None,
        }
    result["worst_p99_ratio"] = round(worst, 2)
    result["targets_met"] = {
        "p99_within_3x_raw": worst <= TARGET_RATIO,
        "enrol_all_within_60s": bool(
            result["bulk_seconds_for_all"] is not None
            and result["bulk_seconds_for_all"] <= TARGET_ENROL_SECONDS
        ),
    }
    print(json.dumps(result))
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--players", type=int, default=1_000_000)
    parser.add_argument(
        "--api-joins", type=int, default=1_000, help="players who join through JoinQuiz"
    )
    parser.add_argument("--join-concurrency", type=int, default=16)
    parser.add_argument("--enrol-batch", type=int, default=ENROL_BATCH)
    parser.add_argument("--calls", type=int, default=3_000, help="timed calls per read kind")
    parser.add_argument("--rounds", type=int, default=10, help="RPC/raw interleaving rounds")
    add_server_args(parser, mysql_help="MySQL/MariaDB server URL, or 'sqlite'")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="also record py-spy profiles of the leaderboard service into DIR",
    )
    args = parser.parse_args()
    # The services run on uvloop; so does the client, so both sides compare alike.
    run_cleanly(main(args), fast_loop=True)


if __name__ == "__main__":
    cli()
