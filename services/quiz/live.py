"""The quiz service's writes to a quiz's live Redis state (read by score,
leaderboard and stream services; layout in services/live/board.py)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.typing import EncodableT

from services.live.board import QuizKeys, pack
from services.mesh.errors import Unavailable
from services.quiz.store import Question, QuizRecord

# Changes to a quiz's live state apply only while the state exists: if Redis lost
# it, a partial write would look like a whole quiz; recovery rebuilds it instead.
UPDATE_STATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('HINCRBY', KEYS[1], 'version', tonumber(ARGV[1]))
return 1
"""
ADD_PLAYER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
"""


def state_fields(quiz: QuizRecord) -> dict[EncodableT, EncodableT]:
    """The state hash of a quiz as its SQL row describes it."""
    return {
        "status": quiz.state,
        "question": quiz.current_question,
        "opened_at": quiz.question_opened_ms or 0,
        "deadline": quiz.question_deadline_ms or 0,
        "epoch": quiz.created_ms,
        "host": quiz.host,
        "question_count": quiz.question_count,
    }


def question_specs(qs: list[Question]) -> dict[EncodableT, EncodableT]:
    """What the score script needs of each question: correct|points|limit|choices."""
    return {
        str(q.index): f"{q.correct_choice}|{q.points}|{q.time_limit_ms}|{len(q.choices)}"
        for q in qs
    }


class LiveQuizzes:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._update_state = redis.register_script(UPDATE_STATE)
        self._add_player = redis.register_script(ADD_PLAYER)

    def keys(self, quiz_id: str) -> QuizKeys:
        return QuizKeys(self.prefix, quiz_id)

    async def publish_quiz(self, quiz: QuizRecord, qs: list[Question]) -> None:
        """Everything the score service needs to judge answers without SQL."""
        keys = self.keys(quiz.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.questions, mapping=question_specs(qs))
            pipe.hset(keys.state, mapping={**state_fields(quiz), "version": 0})
            await pipe.execute()

    async def _update(self, quiz_id: str, version_step: int, **fields: str | int) -> None:
        args: list[str | int] = [version_step]
        for name, value in fields.items():
            args += [name, value]
        if not await self._update_state(keys=[self.keys(quiz_id).state], args=args):
            raise Unavailable(missing(quiz_id))

    async def open_question(self, quiz_id: str, index: int, opened: int, deadline: int) -> None:
        await self._update(
            quiz_id, 0, status="RUNNING", question=index, opened_at=opened, deadline=deadline
        )

    async def close(self, quiz_id: str, closed: int) -> None:
        # Ends the open question too: the score script checks the status first.
        await self._update(quiz_id, 1, status="CLOSED", closed_at=closed)

    async def add_player(self, quiz_id: str, player_id: str, nickname: str, reached: int) -> None:
        """A new player starts at 0 points, ranked by when they joined."""
        keys = self.keys(quiz_id)
        added = await self._add_player(
            keys=[keys.state, keys.board, keys.nicknames],
            args=[player_id, pack(0, reached), nickname],
        )
        if not added:
            raise Unavailable(missing(quiz_id))

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


def missing(quiz_id: str) -> str:
    return f"the live state of quiz {quiz_id} is being restored; retry in a moment"
