"""What a game's report is made of, from where it is kept: the live state while the
game has one (Redis), the system of record after (SQL, once the sync job made the
board final). Either way: the players in board order with their scores, their
accepted answers, and when each question opened."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.database.tables import BOARD_ORDER, answers, players, questions, scores
from services.live.keys import QuizKeys
from services.live.layout import Answer, points_of
from services.mesh.connections import LiveRedis


@dataclass(frozen=True, slots=True)
class GameRecord:
    # (player id, score), best first: the board's order.
    standings: list[tuple[str, int]]
    nicknames: dict[str, str]
    # (question index, player id) -> the accepted answer
    answers: dict[tuple[int, str], Answer]
    # question index -> when it opened (ms), where known
    opened: dict[int, int]


class ReportSource:
    def __init__(self, engine: AsyncEngine, redis: LiveRedis, prefix: str) -> None:
        self.engine = engine
        self.redis = redis
        self.prefix = prefix

    async def live(self, quiz_id: str) -> GameRecord | None:
        """From the live state; None when the game has none (any more)."""
        keys = QuizKeys(self.prefix, quiz_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(keys.state)
            pipe.zrevrange(keys.board, 0, -1, withscores=True)
            pipe.hgetall(keys.answers)
            exists, board, recorded = await pipe.execute()
        if not exists:
            return None
        found: dict[tuple[int, str], Answer] = {}
        for field, record in recorded.items():
            question, player_id = field.split(":", 1)
            found[(int(question), player_id)] = Answer.parse(int(question), record)
        return GameRecord(
            standings=[(str(pid), points_of(float(packed))) for pid, packed in board],
            nicknames=await self._nicknames(quiz_id),
            answers=found,
            opened=await self._opened(quiz_id),
        )

    async def final(self, quiz_id: str) -> GameRecord:
        """From the system of record (a board the sync job made final)."""
        async with self.engine.connect() as conn:
            ranked = await conn.execute(
                select(scores.c.player_id, scores.c.score)
                .where(scores.c.quiz_id == quiz_id)
                .order_by(*BOARD_ORDER)
            )
            standings = [(str(r.player_id), int(r.score)) for r in ranked]
            rows = await conn.execute(select(answers).where(answers.c.quiz_id == quiz_id))
            found = {
                (r.question_idx, r.player_id): Answer(
                    r.question_idx, r.choice, bool(r.correct), r.points, r.answered_ms
                )
                for r in rows
            }
        return GameRecord(
            standings, await self._nicknames(quiz_id), found, await self._opened(quiz_id)
        )

    async def _nicknames(self, quiz_id: str) -> dict[str, str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(players.c.id, players.c.nickname).where(players.c.quiz_id == quiz_id)
            )
            return {str(r.id): str(r.nickname) for r in rows}

    async def _opened(self, quiz_id: str) -> dict[int, int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(questions.c.idx, questions.c.opened_ms).where(
                    questions.c.quiz_id == quiz_id, questions.c.opened_ms.is_not(None)
                )
            )
            return {int(r.idx): int(r.opened_ms) for r in rows}
