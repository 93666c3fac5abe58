"""Answers against a quiz's live state: the atomic answer script, and reads of what
a player has answered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.live.keys import QuizKeys
from services.live.layout import SCALE, Answer, Field, answer_field, points_of, withheld_question
from services.live.pipeline import PipelinedRedis, Script
from services.live.scripts import source
from services.mesh.connections import LiveRedis


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the script decided: accepted, replay (with the original) or an error
    (no_quiz, no_player, not_started, closed, not_open, moved_on, late, bad_choice)."""

    kind: str
    answer: Answer | None = None
    # The total the player may see now: without this answer's points until revealed.
    total_score: int = 0
    # Whether the answer's result may be told (see layout.withheld_question).
    revealed: bool = False
    # The total with this answer counted, revealed or not (for the answer log).
    running_total: int = 0
    error: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PlayerAnswers:
    """What a player may see of their own game now."""

    # The total of their revealed answers (their score on the board).
    total: int
    # Each accepted answer, by question, with whether its result is told.
    answers: list[tuple[Answer, bool]]


class AnswerBook:
    def __init__(self, redis: LiveRedis, script_pipe: PipelinedRedis, prefix: str) -> None:
        self.redis = redis
        # The answer script goes through one pipelined connection (see pipeline.py);
        # the rare reads below use the ordinary client.
        self._submit = Script(script_pipe, source("submit_answer"))
        self.prefix = prefix

    async def submit(
        self, quiz_id: str, question_index: int, player_id: str, choice_index: int, now: int
    ) -> Outcome:
        keys = QuizKeys(self.prefix, quiz_id)
        result: list[Any] = await self._submit(
            [keys.state, keys.questions, keys.answers, keys.board, keys.pending, keys.changed],
            [player_id, question_index, choice_index, now, SCALE],
        )
        kind = result[0]
        if kind == "error":
            return Outcome(kind, error=result[1], detail=result[2] if len(result) > 2 else "")
        return Outcome(
            kind,
            answer=Answer.parse(question_index, result[1]),
            total_score=int(result[2]),
            revealed=result[3] == 1,
            running_total=int(result[4]),
        )

    async def player_answers(self, quiz_id: str, player_id: str, now: int) -> PlayerAnswers | None:
        """The player's total and answers as they may see them at `now`, or None
        when not in the quiz."""
        keys = QuizKeys(self.prefix, quiz_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zscore(keys.board, player_id)
            pipe.zscore(keys.pending, player_id)
            pipe.hgetall(keys.state)
            packed, waiting, state = await pipe.execute()
        if packed is None:
            return None
        withheld = withheld_question(state, now)
        count = int(state.get(Field.QUESTION_COUNT) or 0)
        fields = [answer_field(i, player_id) for i in range(count)]
        records: list[Any] = await self.redis.hmget(keys.answers, fields) if fields else []
        answers = [(Answer.parse(i, r), i != withheld) for i, r in enumerate(records) if r]
        # Past the deadline, before the sweep revealed it, the pending total is told.
        total = points_of(waiting if waiting is not None and withheld is None else packed)
        return PlayerAnswers(total, answers)

    async def host_of(self, quiz_id: str) -> str | None:
        host = await self.redis.hget(QuizKeys(self.prefix, quiz_id).state, Field.HOST)
        return str(host) if host is not None else None
