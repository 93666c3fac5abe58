"""The quiz service's writes to a quiz's live Redis state (read by score,
leaderboard and stream services; layout in services/core/board.py)."""

from __future__ import annotations

from redis.asyncio import Redis

from services.core.board import QuizKeys, pack
from services.quiz.store import Question, QuizRecord


class LiveQuizzes:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def keys(self, quiz_id: str) -> QuizKeys:
        return QuizKeys(self.prefix, quiz_id)

    async def publish_quiz(self, quiz: QuizRecord, qs: list[Question]) -> None:
        """Everything the score service needs to judge answers without SQL."""
        keys = self.keys(quiz.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.state,
                mapping={
                    "status": quiz.state,
                    "question": quiz.current_question,
                    "opened_at": quiz.question_opened_ms or 0,
                    "deadline": quiz.question_deadline_ms or 0,
                    "epoch": quiz.created_ms,
                    "host": quiz.host,
                    "question_count": quiz.question_count,
                },
            )
            pipe.hsetnx(keys.state, "version", 0)
            pipe.hset(
                keys.questions,
                mapping={
                    str(
                        q.index
                    ): f"{q.correct_choice}|{q.points}|{q.time_limit_ms}|{len(q.choices)}"
                    for q in qs
                },
            )
            await pipe.execute()

    async def open_question(self, quiz_id: str, index: int, opened: int, deadline: int) -> None:
        await self.redis.hset(
            self.keys(quiz_id).state,
            mapping={
                "status": "RUNNING",
                "question": index,
                "opened_at": opened,
                "deadline": deadline,
            },
        )

    async def close(self, quiz_id: str, closed: int) -> None:
        keys = self.keys(quiz_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            # Ends the open question too: the score script checks the status first.
            pipe.hset(keys.state, mapping={"status": "CLOSED", "closed_at": closed})
            pipe.hincrby(keys.state, "version", 1)
            await pipe.execute()

    async def add_player(self, quiz_id: str, player_id: str, nickname: str, reached: int) -> None:
        """A new player starts at 0 points, ranked by when they joined."""
        keys = self.keys(quiz_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.board, {player_id: pack(0, reached)}, nx=True)
            pipe.hset(keys.nicknames, player_id, nickname)
            pipe.hincrby(keys.state, "version", 1)
            await pipe.execute()

    async def remove_player(self, quiz_id: str, player_id: str) -> None:
        keys = self.keys(quiz_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.board, player_id)
            pipe.hdel(keys.nicknames, player_id)
            await pipe.execute()

    async def player_count(self, quiz_id: str) -> int | None:
        keys = self.keys(quiz_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.state)
            pipe.zcard(keys.board)
            exists, count = await pipe.execute()
        return int(count) if exists else None
