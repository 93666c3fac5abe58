"""The client-side log: every answer the clients saw acknowledged, refused or retried."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass

import grpc
from quizmesh.score.v1 import score_pb2


@dataclass(frozen=True)
class Ack:
    """An acknowledged answer as the client saw it."""

    player_id: str
    question: int
    choice: int
    correct: bool
    points: int
    answered_ms: int
    total_score: int
    replayed: bool
    attempts: int

    @property
    def result(self) -> tuple[int, int, bool, int, int]:
        """What a replay must repeat exactly."""
        return (self.question, self.choice, self.correct, self.points, self.answered_ms)

    @classmethod
    def of(cls, player_id: str, reply: score_pb2.SubmitAnswerResponse, attempts: int) -> Ack:
        r = reply.result
        return cls(
            player_id=player_id,
            question=r.question_index,
            choice=r.choice_index,
            correct=r.correct,
            points=r.points_awarded,
            answered_ms=r.answered_at.ToMilliseconds(),
            total_score=reply.total_score,
            replayed=reply.replayed,
            attempts=attempts,
        )


class AnswerLog:
    """Every acknowledged answer, every refusal, and how often clients had to retry."""

    def __init__(self) -> None:
        self.acks: dict[tuple[str, int], Ack] = {}
        self.problems: list[str] = []
        self.retried: Counter[str] = Counter()
        self._by_player: dict[str, list[Ack]] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def acknowledged(self, ack: Ack) -> None:
        key = (ack.player_id, ack.question)
        first = self.acks.get(key)
        if first is None:
            self.acks[key] = ack
            self._by_player.setdefault(ack.player_id, []).append(ack)
        elif first.result != ack.result:
            self.problems.append(
                f"player {ack.player_id} q{ack.question}: acknowledged twice with different "
                f"results {first.result} then {ack.result}"
            )
        for count, waiter in list(self._waiters):
            if len(self.acks) >= count and not waiter.done():
                waiter.set_result(None)

    def retry(self, error: grpc.aio.AioRpcError) -> None:
        self.retried[f"{error.code().name}: {(error.details() or '')[:80]}"] += 1

    def refused(
        self, player_id: str, question: int, error: grpc.aio.AioRpcError, gave_up: bool
    ) -> None:
        why = "gave up retrying" if gave_up else "refused"
        self.problems.append(
            f"player {player_id} q{question} never acknowledged ({why}): "
            f"{error.code().name}: {error.details()}"
        )

    def describe_problems(self) -> str:
        """The problems, alike ones counted together (quiz codes and ids vary)."""
        kinds = Counter(re.sub(r"player \w+ q\d+ ", "", p) for p in self.problems)
        return f"{len(self.problems)} problems:\n" + "\n".join(
            f"  {n} x {kind}" for kind, n in kinds.most_common(10)
        )

    async def until(self, count: int) -> None:
        """Returns once `count` answers have been acknowledged."""
        if len(self.acks) >= count:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        await waiter

    def of(self, player_id: str) -> list[Ack]:
        """A player's acknowledged answers, in question order."""
        return sorted(self._by_player.get(player_id, []), key=_question)

    def summary(self) -> str:
        replays = sum(a.replayed for a in self.acks.values())
        retries = sum(self.retried.values())
        return (
            f"{len(self.acks)} answers acknowledged ({replays} as replays), {retries} retries"
            + "".join(f"\n  {n} x {what}" for what, n in self.retried.most_common(8))
        )


def _question(ack: Ack) -> int:
    return ack.question
