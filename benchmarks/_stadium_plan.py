"""The stadium benchmark's figures and its capacity model: per-unit costs measured in
one run (stadium.py), and what they make of two sizes:

(a) one quiz, 1,000,000 players, all watching, answering at 50,000/s;
(b) 6,000 answers/s across many quizzes (the answer path; fan-out as in (a) per
    watcher).

Per-unit costs are CPU seconds of a component over the window divided by what it
did: answers (every component), snapshots, board messages delivered (stream,
Envoy), changes applied to a board copy and own ranks worked out (the unconnected
players' ranker, which runs the stream service's code). A process or shard is
planned at PLAN_LOAD of its core. Components one quiz cannot spread are named as
such: its Redis keys share a hash tag (one shard), the answers' JetStream stream has
one leader (one server), and every stream process watching the quiz applies every
change to its copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from benchmarks.end_to_end import percentiles
from services.leaderboard.coalescer import MOST_CHANGES

PLAN_LOAD = 0.7
STADIUM_PLAYERS = 1_000_000
STADIUM_RATE = 50_000.0
MANY_QUIZZES_RATE = 6_000.0
# Per answer for the shared components; the rest scale out or are watcher costs.
ANSWER_PATH = ("score", "redis", "nats", "leaderboard", "quiz", "mariadb")
# What one quiz cannot spread over more processes or shards.
ONE_PER_QUIZ = {"redis": "one shard", "nats": "one stream leader"}


@dataclass(frozen=True)
class Run:
    """What stadium.py measured."""

    options: dict[str, Any]
    enrol_seconds: float
    window: tuple[float, float]
    cpu: dict[str, float]  # component -> CPU seconds in the window
    answers: int  # accepted in the window
    refused: dict[str, int]
    visible_ms: dict[str, list[float]]  # "sse"/"native" -> answer -> own rank visible
    unseen: int  # watched answers whose points no frame showed
    messages: tuple[int, int]  # boards delivered in the window: SSE, native
    # _stadium_ranks' rounds, snapshots, applies, skipped rounds, whole reads of the copy
    ranker: tuple[list[Any], list[Any], list[Any], list[float], int]
    board_interval: float
    per_worker: list[int]


def figures(run: Run) -> dict[str, Any]:
    start, end = run.window
    seconds = end - start
    rounds = [r for r in run.ranker[0] if start <= r[0] <= end]
    snapshots = [s for s in run.ranker[1] if start <= s[0] <= end]
    applies = [a for a in run.ranker[2] if start <= a[0] <= end]
    answers, n_snapshots = max(1, run.answers), max(1, len(snapshots))
    changes = sum(a[1] for a in applies)
    apply_us = sum(a[2] for a in applies) / max(1, changes) * 1e6
    per_update_us, per_change_us = apply_fit(applies)
    ranked = sum(r[2] for r in rounds)
    rank_us = sum(r[1] for r in rounds) / max(1, ranked) * 1e6
    sse, native = run.messages
    streams = {k: v for k, v in run.cpu.items() if k.startswith("stream-")}
    # A stream process's own cost per board sent: its CPU less keeping its copy level
    # and ranking its watchers (both at the ranker's measured unit costs).
    stream_rank_cpu = (sse + native) * rank_us / 1e6
    stream_msg_us = (
        (sum(streams.values()) - len(streams) * changes * apply_us / 1e6 - stream_rank_cpu)
        / max(1, sse + native)
        * 1e6
    )
    visible = [v for values in run.visible_ms.values() for v in values]
    components = {
        name: {
            "cpu_s": round(cpu, 2),
            "cores": round(cpu / seconds, 3),
            "us_per_answer": round(cpu / answers * 1e6, 1),
            "ms_per_snapshot": round(cpu / n_snapshots * 1e3, 2),
        }
        for name, cpu in run.cpu.items()
    }
    unit = {
        **{f"{name}_us_per_answer": components[name]["us_per_answer"] for name in ANSWER_PATH},
        "stream_apply_us_per_change": round(apply_us, 3),
        # An update's apply is a pass over the whole copy plus a cost per change.
        "stream_apply_us_per_update": round(per_update_us, 1),
        "stream_apply_us_per_change_fitted": round(per_change_us, 3),
        "own_rank_us": round(rank_us, 3),
        "stream_us_per_message": round(stream_msg_us, 1),
        "envoy_us_per_sse_message": round(run.cpu["envoy"] / max(1, sse) * 1e6, 1),
    }
    return {
        "options": run.options,
        "players": run.options["players"],
        "enrol_seconds": round(run.enrol_seconds, 1),
        "seconds": round(seconds, 1),
        "answers": run.answers,
        "answers_per_second": round(run.answers / seconds),
        "refused": run.refused,
        "snapshots": len(snapshots),
        "snapshots_per_second": round(len(snapshots) / seconds, 2),
        "changes_per_snapshot": round(changes / n_snapshots),
        "rank_rounds": len(rounds),
        "rank_rounds_skipped": sum(1 for t in run.ranker[3] if start <= t <= end),
        "copy_reads": run.ranker[4],
        "ranks_per_round": round(ranked / max(1, len(rounds))),
        "rank_round_cpu_ms": percentiles([r[1] * 1e3 for r in rounds]),
        "rank_round_wall_ms": percentiles([r[4] * 1e3 for r in rounds]),
        "watchers_per_stream_process": run.per_worker,
        "board_messages": {"sse": sse, "native": native},
        "visible_ms": {
            "all": percentiles(visible),
            **{kind: percentiles(values) for kind, values in run.visible_ms.items()},
        },
        "visible_count": len(visible),
        "unseen": run.unseen,
        "components": components,
        "unit_costs": unit,
        "capacity": capacity(unit, run.board_interval, len(snapshots) / seconds),
    }


def apply_fit(applies: list[Any]) -> tuple[float, float]:
    """µs per BoardUpdate and per change of applying updates to a copy, by least
    squares over (changes, CPU) of each update applied; all per change when the
    updates were too alike to tell the two apart."""
    xs = [float(a[1]) for a in applies if a[1]]
    ys = [a[2] * 1e6 for a in applies if a[1]]
    if len(set(xs)) < 2:
        return 0.0, sum(ys) / max(1.0, sum(xs))
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    slope = max(0.0, slope)
    return max(0.0, my - slope * mx), slope


def _row(
    name: str, unit_us: float, rate: float, limit: str = "", per: str = "answer"
) -> dict[str, Any]:
    """`unit_us` of CPU per answer (or per watcher and second) at `rate` of them."""
    cores = unit_us * rate / 1e6
    return {
        "component": name,
        "per": per,
        "unit_us": round(unit_us, 2),
        "cores": round(cores, 2),
        "processes": max(1, math.ceil(cores / PLAN_LOAD)),
        # How many answers/s (or watchers) one process or shard carries at PLAN_LOAD.
        "max_rate_one": round(PLAN_LOAD * 1e6 / unit_us) if unit_us > 0 else None,
        "one_per_quiz": limit,
    }


def capacity(unit: dict[str, float], interval: float, ticks: float) -> dict[str, Any]:
    """The two sizes from the unit costs; `ticks`: snapshots per second measured (the
    leaderboard's tick while a quiz is busy)."""
    boards = 1.0 / interval if interval > 0 else ticks  # per watcher per second
    stadium = [
        _row(name, unit[f"{name}_us_per_answer"], STADIUM_RATE, ONE_PER_QUIZ.get(name, ""))
        for name in ANSWER_PATH
    ]
    # A tick's changes come in updates of at most MOST_CHANGES, each a pass over the copy.
    changes_per_tick = STADIUM_RATE / max(ticks, 1.0)
    updates = math.ceil(changes_per_tick / MOST_CHANGES) * max(ticks, 1.0)
    apply_us = (
        updates * unit["stream_apply_us_per_update"]
        + STADIUM_RATE * unit["stream_apply_us_per_change_fitted"]
    ) / STADIUM_RATE
    stadium.append(_row("stream: copy level", apply_us, STADIUM_RATE, "every stream process"))
    per_watcher_us = boards * (unit["stream_us_per_message"] + unit["own_rank_us"])
    left = PLAN_LOAD * 1e6 - STADIUM_RATE * apply_us  # of a stream process's core
    watchers_each = max(0, math.floor(left / per_watcher_us)) if per_watcher_us > 0 else 0
    fan_out = _row("stream: boards + own ranks", per_watcher_us, STADIUM_PLAYERS, per="watcher")
    # Each process also keeps its copy level: fewer watchers than its core alone carries.
    fan_out["processes"] = math.ceil(STADIUM_PLAYERS / watchers_each) if watchers_each else None
    fan_out["max_rate_one"] = watchers_each or None
    envoy_us = boards * unit["envoy_us_per_sse_message"]
    stadium += [fan_out, _row("envoy: SSE boards", envoy_us, STADIUM_PLAYERS, per="watcher")]
    # What breaks first for one quiz: the lowest answer rate a part it cannot spread takes.
    single = [r for r in stadium if r["one_per_quiz"] and r["max_rate_one"]]
    first = min(single, key=lambda r: r["max_rate_one"])
    many = [_row(name, unit[f"{name}_us_per_answer"], MANY_QUIZZES_RATE) for name in ANSWER_PATH]
    many_first = min((r for r in many if r["max_rate_one"]), key=lambda r: r["max_rate_one"])
    return {
        "plan_load": PLAN_LOAD,
        "boards_per_watcher_per_second": boards,
        "stadium": stadium,
        "stadium_fails_first": {
            "component": first["component"],
            "at_answers_per_second": first["max_rate_one"],
            "why": first["one_per_quiz"],
        },
        "many_quizzes": many,
        "many_quizzes_fails_first": {
            "component": many_first["component"],
            "at_answers_per_second": many_first["max_rate_one"],
            "processes_for_6000": many_first["processes"],
        },
    }


def report(r: dict[str, Any]) -> str:
    o = r["options"]
    lines = [
        f"stadium: {r['players']:,} players in one quiz (enrolled in {r['enrol_seconds']} s); "
        f"{o['sse_watchers']} SSE watchers through Envoy + {o['native_watchers']} native gRPC "
        f"on {len(r['watchers_per_stream_process'])} stream processes "
        f"({' + '.join(map(str, r['watchers_per_stream_process']))})",
        f"  {r['answers']:,} answers in {r['seconds']} s ({r['answers_per_second']:,}/s, "
        f"refused {sum(r['refused'].values())}); {r['snapshots']} snapshots "
        f"({r['snapshots_per_second']}/s, {r['changes_per_snapshot']:,} changes each)",
        f"  own ranks of every player: {r['rank_rounds']} rounds of {r['ranks_per_round']:,} "
        f"for {r['snapshots']} snapshots (the hub's pace: at most one round per "
        f"{1 / r['capacity']['boards_per_watcher_per_second']:.2f} s, the next once one ends)",
        f"  ({r['rank_rounds_skipped']} boards not ranked: the copy not level; read whole "
        f"{r['copy_reads']} times); CPU per round p50 {r['rank_round_cpu_ms'].get('p50', '-')} ms, "
        f"max {r['rank_round_cpu_ms'].get('max', '-')} ms "
        f"({r['unit_costs']['own_rank_us']} us per rank), wall p50 "
        f"{r['rank_round_wall_ms'].get('p50', '-')} ms",
        "",
        f"{'CPU':<20} {'cores':>7} {'us/answer':>10} {'ms/snapshot':>12}",
    ]
    for name, c in r["components"].items():
        answer, snapshot = c["us_per_answer"], c["ms_per_snapshot"]
        lines.append(f"{name:<20} {c['cores']:>7.3f} {answer:>10.1f} {snapshot:>12.2f}")
    lines += [
        "",
        f"{'answer -> own rank visible, ms':<32} {'n':>6} {'p50':>8} {'p99':>8} {'max':>8}",
    ]
    for kind, p in r["visible_ms"].items():
        n = r["visible_count"] if kind == "all" else ""
        p50, p99, most = (p.get(q, "-") for q in ("p50", "p99", "max"))
        lines.append(f"{kind:<32} {n!s:>6} {p50:>8} {p99:>8} {most:>8}")
    lines.append(f"  (watched answers no frame showed: {r['unseen']})")
    u = r["unit_costs"]
    lines += [
        "",
        "unit costs: " + ", ".join(f"{k} {v}" for k, v in u.items()),
        "",
        _table(
            f"(a) one quiz, {STADIUM_PLAYERS:,} players watching, {STADIUM_RATE:,.0f} answers/s",
            r["capacity"]["stadium"],
        ),
    ]
    first = r["capacity"]["stadium_fails_first"]
    lines.append(
        f"  fails first: {first['component']} ({first['why']}) at "
        f"{first['at_answers_per_second']:,} answers/s for one quiz"
    )
    lines += [
        "",
        _table(
            f"(b) {MANY_QUIZZES_RATE:,.0f} answers/s across many quizzes",
            r["capacity"]["many_quizzes"],
        ),
    ]
    many = r["capacity"]["many_quizzes_fails_first"]
    lines.append(
        f"  fails first on one process/shard: {many['component']} at "
        f"{many['at_answers_per_second']:,} answers/s ({many['processes_for_6000']} for 6,000/s)"
    )
    return "\n".join(lines)


def _table(title: str, rows: list[dict[str, Any]]) -> str:
    head = (
        f"  {'component':<28} {'CPU us':>13} {'cores':>8} {'procs':>6} {'one carries':>14}  limit"
    )
    out = [title, head, "  " + "-" * (len(head) - 2)]
    for row in rows:
        procs = row["processes"] if row["processes"] is not None else "-"
        per = "/answer" if row["per"] == "answer" else "/watcher/s"
        unit = f"{row['unit_us']}{per}"
        best = "-"
        if row["max_rate_one"]:
            best = f"{row['max_rate_one']:,}" + ("/s" if row["per"] == "answer" else " w")
        out.append(
            f"  {row['component']:<28} {unit:>13} {row['cores']:>8} {procs!s:>6} "
            f"{best:>14}  {row['one_per_quiz']}"
        )
    return "\n".join(out)
