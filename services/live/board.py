"""The live state of a quiz in Redis, and ranked reads over it.

All keys of one quiz share the hash tag `{quiz_id}`, so scripts touching several of
them run on one Redis Cluster shard while different quizzes spread out.

A leaderboard is one sorted set whose member score packs two numbers into a
double: `points * SCALE - reached_ms`, where reached_ms counts milliseconds since
the quiz was created. Higher points rank first; among equal points, whoever reached
them earlier ranks first. The value stays an exact integer below 2**53 as long as
points < 2**22 and a quiz lives less than 2**31 ms (24 days).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from quizmesh.common.v1 import common_pb2
from redis.asyncio import Redis

SCALE = 2**31
MAX_POINTS = 2**22 - 1


def pack(points: int, reached_ms: int) -> float:
    return float(points * SCALE - reached_ms)


def points_of(packed: float) -> int:
    return math.ceil(packed / SCALE)


@dataclass(frozen=True, slots=True)
class Answer:
    """An accepted answer as kept in a quiz's `answers` hash (see submit_answer.lua)."""

    question_index: int
    choice_index: int
    correct: bool
    points_awarded: int
    answered_ms: int

    @classmethod
    def parse(cls, question_index: int, record: str) -> Answer:
        choice, correct, points, answered = record.split("|")
        return cls(question_index, int(choice), correct == "1", int(points), int(answered))

    def record(self) -> str:
        return f"{self.choice_index}|{int(self.correct)}|{self.points_awarded}|{self.answered_ms}"


@dataclass(frozen=True, slots=True)
class QuizKeys:
    """Every Redis key of one quiz."""

    prefix: str
    quiz_id: str

    def _key(self, name: str) -> str:
        return f"{self.prefix}quiz:{{{self.quiz_id}}}:{name}"

    @property
    def board(self) -> str:
        """Sorted set: player id -> packed score."""
        return self._key("board")

    @property
    def nicknames(self) -> str:
        """Hash: player id -> nickname."""
        return self._key("nicknames")

    @property
    def state(self) -> str:
        """Hash: status, question, opened_at, deadline, epoch, version, answers:<q>."""
        return self._key("state")

    @property
    def questions(self) -> str:
        """Hash: question index -> "correct|points|time_limit_ms"."""
        return self._key("questions")

    @property
    def answers(self) -> str:
        """Hash: "<question>:<player>" -> accepted answer record."""
        return self._key("answers")

    @property
    def recovering(self) -> str:
        """String: held while one process rebuilds this quiz's live state."""
        return self._key("recovering")

    def all(self) -> list[str]:
        """The keys of the live state (not the recovery lock)."""
        return [self.board, self.nicknames, self.state, self.questions, self.answers]


class Board:
    """Ranked reads: O(log N + page size) each, whatever the size of the quiz."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def keys(self, quiz_id: str) -> QuizKeys:
        return QuizKeys(self.prefix, quiz_id)

    async def status(self, quiz_id: str) -> str | None:
        """OPEN, RUNNING or CLOSED; None when the quiz is not in Redis."""
        status = await self.redis.hget(self.keys(quiz_id).state, "status")
        return None if status is None else str(status)

    async def page(
        self, quiz_id: str, offset: int, count: int
    ) -> tuple[list[common_pb2.LeaderboardEntry], int]:
        keys = self.keys(quiz_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrevrange(keys.board, offset, offset + count - 1, withscores=True)
            pipe.zcard(keys.board)
            rows, total = await pipe.execute()
        return await self._entries(keys, rows, first_rank=offset + 1), int(total)

    async def around(
        self, quiz_id: str, player_id: str, neighbours: int
    ) -> tuple[
        common_pb2.LeaderboardEntry | None,
        list[common_pb2.LeaderboardEntry],
        list[common_pb2.LeaderboardEntry],
        int,
    ]:
        """The player's entry with up to `neighbours` players above and below."""
        keys = self.keys(quiz_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrevrank(keys.board, player_id)
            pipe.zcard(keys.board)
            index, total = await pipe.execute()
        if index is None:
            return None, [], [], int(total)
        start = max(0, index - neighbours)
        rows = await self.redis.zrevrange(keys.board, start, index + neighbours, withscores=True)
        entries = await self._entries(keys, rows, first_rank=start + 1)
        mine = index - start
        return entries[mine], entries[:mine], entries[mine + 1 :], int(total)

    async def standings(
        self, quiz_id: str, player_ids: list[str]
    ) -> dict[str, common_pb2.PlayerStanding]:
        """Rank and score of many players in one round trip."""
        if not player_ids:
            return {}
        keys = self.keys(quiz_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for pid in player_ids:
                pipe.zrevrank(keys.board, pid)
                pipe.zscore(keys.board, pid)
            pipe.hmget(keys.nicknames, player_ids)
            *found, names = await pipe.execute()
        result = {}
        for pid, index, packed, name in zip(
            player_ids, found[::2], found[1::2], names, strict=True
        ):
            if index is not None and packed is not None:
                result[pid] = common_pb2.PlayerStanding(
                    player_id=pid, nickname=name or "", rank=index + 1, score=points_of(packed)
                )
        return result

    async def snapshot(self, quiz_id: str, top: int) -> common_pb2.LeaderboardSnapshot:
        """The top of the board with its version, read consistently in one MULTI."""
        keys = self.keys(quiz_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrevrange(keys.board, 0, top - 1, withscores=True)
            pipe.zcard(keys.board)
            pipe.hmget(keys.state, ["version", "question", "status", "changed_at"])
            rows, total, (version, question, status, changed_at) = await pipe.execute()
        q = int(question) if question is not None else -1
        answers = await self.redis.hget(keys.state, f"answers:{q}") if q >= 0 else None
        snapshot = common_pb2.LeaderboardSnapshot(
            quiz_id=quiz_id,
            version=int(version or 0),
            entries=await self._entries(keys, rows, first_rank=1),
            total_players=int(total),
            question_index=q,
            question_answers=int(answers or 0),
            is_final=status == "CLOSED",
        )
        if changed_at:
            snapshot.changed_at.FromMilliseconds(int(changed_at))
        return snapshot

    async def _entries(
        self, keys: QuizKeys, rows: Any, first_rank: int
    ) -> list[common_pb2.LeaderboardEntry]:
        """Ranked entries from ZREVRANGE ... WITHSCORES rows (player id, packed score)."""
        if not rows:
            return []
        names: list[Any] = await self.redis.hmget(keys.nicknames, [pid for pid, _ in rows])
        return [
            common_pb2.LeaderboardEntry(
                rank=first_rank + i, player_id=pid, nickname=name or "", score=points_of(packed)
            )
            for i, ((pid, packed), name) in enumerate(zip(rows, names, strict=True))
        ]
