"""A stateful property of the game (issue 6): hypothesis draws a random walk of
join / start / answer (random player, question and choice, with replays of the
same and of another choice, and late answers) / wait / advance / close against
the real services over gRPC, and after every step each player's score equals the
sum of the points the server awarded its accepted answers (each checked against
docs/spec.md#scoring), ranks follow score desc then who reached it first, and
refusals change nothing. The walk plays a practice quiz (instant feedback) or the
default one, where results, scores and the board hold back an answer until its
question closes (docs/spec.md#visibility).

Hypothesis drives the `async def` test itself (pytest-asyncio runs the inner
test on the session loop); RuleBasedStateMachine is synchronous, so the walk is
a drawn list of steps interpreted here."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.mesh.clock import now_ms
from tests.api import ApiError, GrpcApi
from tests.game import Player, answer, expected_points, join, ms
from tests.stack import Stack

pytestmark = pytest.mark.usefixtures("stack")

QUIZ: dict[str, Any] = {
    "title": "Model game",
    "questions": [
        {"text": "a?", "choices": ["x", "y", "z"], "correct_choice": 1, "time_limit_ms": 60_000},
        # The short one, for late answers (1000 ms is the minimum).
        {"text": "b?", "choices": ["x", "y"], "correct_choice": 0, "time_limit_ms": 1_000},
        {"text": "c?", "choices": ["x", "y"], "correct_choice": 1, "points": 7},
    ],
}
NICKS = ["ann", "bob", "cat", "dan"]

Step = tuple[str, int, int, int]
_join = st.tuples(st.just("join"), st.integers(0, 3), st.just(0), st.just(0))
CURRENT = 99  # "the question open now", so that most answers can be accepted
_answer = st.tuples(
    st.just("answer"),
    st.integers(0, 3),
    st.sampled_from([CURRENT, CURRENT, CURRENT, -1, 0, 1, 2, 3]),
    st.integers(-1, 3).map(lambda c: (c + 2) % 5 - 1),  # 1 first: often right
)
_replay = st.tuples(st.just("replay"), st.integers(0, 3), st.integers(0, 2), st.integers(0, 1))


def _bare(kind: str) -> st.SearchStrategy[Step]:
    return st.just((kind, 0, 0, 0))


# Mostly: players join, the host starts, answers (and replays) pour in while the
# host advances now and then; sometimes a wait past the 1 s question, a late
# join, a second start, or a close in the middle; usually a close at the end.
_play = st.one_of(
    _answer, _answer, _answer, _replay, _replay, _bare("advance"), _join, _bare("start")
)
steps = st.builds(
    lambda joins, body, rare, close: [*joins, ("start", 0, 0, 0), *body, *rare, *close],
    st.lists(_join, min_size=1, max_size=5),
    st.lists(_play, min_size=3, max_size=16),
    st.lists(st.one_of(_bare("wait"), _bare("close"), _answer, _replay), max_size=3),
    st.lists(_bare("close"), max_size=1),
)


@dataclass
class Model:
    instant: bool  # the quiz's instant_feedback
    players: dict[str, Player] = field(default_factory=dict)  # by nickname
    # pid -> question -> the result as the server tells it once revealed
    accepted: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    joined: dict[str, int] = field(default_factory=dict)  # pid -> tick of the join
    ticks: dict[tuple[str, int], int] = field(default_factory=dict)  # (pid, q) -> answer's tick
    clock: int = 0
    state: str = "QUIZ_STATE_OPEN"
    quiz: dict[str, Any] = field(default_factory=dict)  # the host's latest view

    def withheld(self) -> int | None:
        """The question whose results are not told yet (the open one, by default)."""
        if self.instant or self.state != "QUIZ_STATE_RUNNING":
            return None
        q = int(self.quiz["current_question"])
        return q if now_ms() <= ms(self.quiz["questions"][q]["deadline"]) else None

    def told(self, result: dict[str, Any], withheld: int | None) -> dict[str, Any]:
        if result["question_index"] != withheld:
            return result
        return {**result, "correct": False, "points_awarded": 0, "revealed": False}

    def score(self, pid: str, withheld: int | None) -> int:
        told = [a for q, a in self.accepted[pid].items() if q != withheld]
        return sum(int(a["points_awarded"]) for a in told)

    def reached(self, pid: str, withheld: int | None) -> int:
        scored = [
            self.ticks[pid, q]
            for q, a in self.accepted[pid].items()
            if q != withheld and a["points_awarded"] > 0
        ]
        return max(scored, default=self.joined[pid])

    def ranking(self, withheld: int | None) -> list[tuple[str, int]]:
        def order(p: str) -> tuple[int, int]:
            return -self.score(p, withheld), self.reached(p, withheld)

        return [(p, self.score(p, withheld)) for p in sorted(self.accepted, key=order)]


async def as_of(m: Model, call: Any) -> tuple[Any, int | None, bool]:
    """A call's reply, the question withheld when it ran, and whether that was sure
    (the open question's deadline did not pass while it ran)."""
    before = m.withheld()
    reply = await call
    return reply, before, before == m.withheld()


async def check(api: GrpcApi, host: str, quiz_id: str, m: Model) -> None:
    for pid, answers in m.accepted.items():
        request = {"quiz_id": quiz_id, "player_id": pid}
        got, withheld, sure = await as_of(m, api.call("GetPlayerScore", request, host))
        if not sure:  # the deadline passed meanwhile: ask again, after it
            got, withheld, _ = await as_of(m, api.call("GetPlayerScore", request, host))
        assert got["score"] == m.score(pid, withheld), (pid, got, answers)
        told = {q: m.told(a, withheld) for q, a in answers.items()}
        assert {a["question_index"]: a for a in got["answers"]} == told
    rows: list[tuple[str, int]] = []
    board: dict[str, Any] = {}
    for _ in range(50):  # the board follows answers, and the deadline sweep, a little later
        board = await api.call("GetLeaderboard", {"quiz_id": quiz_id, "page_size": 100})
        rows = [(e["player_id"], e["score"]) for e in board["entries"]]
        expected = m.ranking(m.withheld())
        if rows == expected:
            break
        await asyncio.sleep(0.05)
    assert rows == expected, (rows, expected)
    assert [e["rank"] for e in board["entries"]] == list(range(1, len(expected) + 1))
    quiz = (await api.call("GetQuiz", {"quiz_id": quiz_id}, host))["quiz"]
    assert quiz["state"] == m.state
    assert quiz["player_count"] == len(m.players)


async def step(api: GrpcApi, host: str, quiz_id: str, m: Model, s: Step) -> None:
    kind, _, _, c = s
    refusal = await attempt(api, host, quiz_id, m, s)
    if refusal is None:
        return
    assert refusal.code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), refusal
    if kind == "replay" and m.players:
        # Replays only target answers the model holds: the same choice must be
        # answered with the original result, another one refused as a duplicate.
        assert c == 1, f"a same-choice replay was refused: {refusal}"
        assert refusal.code == grpc.StatusCode.ALREADY_EXISTS, refusal


async def attempt(api: GrpcApi, host: str, quiz_id: str, m: Model, s: Step) -> ApiError | None:
    """Plays one step, updating the model from what the server accepted."""
    kind, a, b, c = s
    try:
        if kind == "join":
            nick = NICKS[a]
            p = await join(api, quiz_id, nick)
            assert nick not in m.players
            assert m.state == "QUIZ_STATE_OPEN"
            m.players[nick] = p
            m.accepted[p.player_id] = {}
            m.clock += 1
            m.joined[p.player_id] = m.clock
        elif kind in ("start", "advance", "close"):
            rpc = {"start": "StartQuiz", "advance": "AdvanceQuestion", "close": "CloseQuiz"}[kind]
            m.quiz = (await api.call(rpc, {"quiz_id": quiz_id}, host))["quiz"]
            m.state = m.quiz["state"]
        elif kind == "wait":
            await asyncio.sleep(1.1)  # past the short question's deadline
        else:
            if not m.players:
                return None
            p = list(m.players.values())[a % len(m.players)]
            mine = m.accepted[p.player_id]
            if kind == "replay":
                if not mine:
                    return None
                q = sorted(mine)[b % len(mine)]
                choice = int(mine[q]["choice_index"]) + c  # c == 1: another choice
            else:
                q, choice = (int(m.quiz["current_question"]) if b == CURRENT else b), c
            reply, withheld, sure = await as_of(m, answer(api, p, quiz_id, q, choice))
            result = reply["result"]
            if q in mine:
                assert reply["replayed"] is True
                if sure:
                    assert result == m.told(mine[q], withheld), (reply, mine[q])
            else:
                assert reply["replayed"] is False
                view = m.quiz["questions"][q]
                right = choice == QUIZ["questions"][q]["correct_choice"]
                want = (
                    expected_points(
                        view["points"],
                        view["time_limit_ms"],
                        view["opened_at"],
                        result["answered_at"],
                    )
                    if right
                    else 0
                )
                assert ms(result["answered_at"]) <= ms(view["deadline"])
                # As the server will tell it; checked now when told at once, else
                # by GetPlayerScore once the question has closed.
                mine[q] = {**result, "correct": right, "points_awarded": want, "revealed": True}
                assert result["revealed"] is m.instant
                assert result == m.told(mine[q], None if m.instant else q)
                m.clock += 1
                m.ticks[p.player_id, q] = m.clock
            if sure:
                assert reply["total_score"] == m.score(p.player_id, withheld)
    except ApiError as e:
        return e
    return None


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(walk=steps, instant=st.booleans())
async def test_scores_always_match_the_accepted_answers(
    stack: Stack, walk: list[Step], instant: bool
) -> None:
    api = GrpcApi(stack.channels)
    host = stack.host_token("modeller")
    created = (await api.call("CreateQuiz", {**QUIZ, "instant_feedback": instant}, host))["quiz"]
    quiz_id = created["quiz_id"]
    m = Model(instant, quiz=created)
    for s in walk:
        await step(api, host, quiz_id, m, s)
        await check(api, host, quiz_id, m)
