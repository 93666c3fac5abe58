"""Quiz state written straight into Redis in the layout of services/live/layout.py, as
the quiz and score services would leave it, for tests of the services that read it.

Nothing here cleans up: the keys live under the test's own key prefix, and
`tests.stack.forget` removes everything under it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from services.live.keys import QuizKeys
from services.live.layout import Field, answer_count_field, pack


@dataclass(frozen=True)
class Seat:
    """A player as seeded on a board: `reached_ms` is when they reached `points`."""

    player_id: str
    nickname: str
    points: int
    reached_ms: int


# seed_quiz with its Redis and key prefix bound: seats and keywords in, quiz id out.
Seed = Callable[..., Awaitable[str]]


async def seed_quiz(
    redis: Redis,
    key_prefix: str,
    seats: Sequence[Seat],
    *,
    status: str = "RUNNING",
    question: int = 0,
    version: int = 1,
) -> str:
    """A new quiz with these players on its board; returns its id.

    `question` is the open question's index (-1 before the first one opens); every
    seat counts as having answered it.
    """
    quiz_id = f"Q{uuid.uuid4().hex[:10].upper()}"
    keys = QuizKeys(key_prefix, quiz_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.state,
            mapping={
                Field.STATUS: status,
                Field.QUESTION: question,
                Field.EPOCH: 0,
                Field.VERSION: version,
            },
        )
        if question >= 0:
            pipe.hset(keys.state, answer_count_field(question), len(seats))
        if seats:
            pipe.zadd(keys.board, {s.player_id: pack(s.points, s.reached_ms) for s in seats})
            pipe.hset(keys.nicknames, mapping={s.player_id: s.nickname for s in seats})
        await pipe.execute()
    return quiz_id
