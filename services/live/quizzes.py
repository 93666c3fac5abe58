"""Writes to a quiz's live state: what the quiz service publishes as a quiz is
created, joined and played, and what recovery writes when it rebuilds one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.typing import EncodableT

from services.database.records import Question, QuizRecord, QuizState
from services.live.errors import restoring
from services.live.keys import QuizKeys
from services.live.layout import (
    Field,
    answer_count_field,
    choice_count_field,
    pack,
    question_specs,
    state_fields,
)
from services.live.scripts import source
from services.mesh.clock import now_ms
from services.mesh.connections import LiveRedis

# Members and fields per command when a whole state is written back.
CHUNK = 5_000
# Pending totals moved onto the board per script call: each call is short, so
# answers of other quizzes on the shard do not wait behind a stadium's reveal.
REVEAL_CHUNK = 2_000


@dataclass(frozen=True, slots=True)
class RebuiltState:
    """A quiz's live state worked out from the system of record and the answer log."""

    quiz: QuizRecord
    questions: list[Question]
    nicknames: dict[str, str]
    # player id -> (points, when they were reached in ms since the quiz was created)
    scores: dict[str, tuple[int, int]]
    # answers hash field -> answer record
    answers: dict[str, str]
    answer_counts: dict[int, int] = field(default_factory=dict)
    # (question, choice) -> how many answers chose it
    choice_counts: dict[tuple[int, int], int] = field(default_factory=dict)
    # Totals reached by answers to the open question, not revealed yet (as scores).
    pending: dict[str, tuple[int, int]] = field(default_factory=dict)
    # When a score last changed (ms), if any did.
    changed_at: int | None = None


class LiveQuizzes:
    def __init__(self, redis: LiveRedis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._update_state = redis.register_script(source("update_state"))
        self._enrol = redis.register_script(source("enrol_players"))
        self._release = redis.register_script(source("release_lock"))
        self._reveal = redis.register_script(source("reveal"))

    def keys(self, quiz_id: str) -> QuizKeys:
        return QuizKeys(self.prefix, quiz_id)

    async def publish(self, quiz: QuizRecord, qs: list[Question]) -> None:
        """A new quiz: everything the score service needs to judge answers without SQL."""
        keys = self.keys(quiz.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.questions, mapping=question_specs(qs))
            fields = {**state_fields(quiz), Field.VERSION: 0}
            pipe.hset(keys.state, mapping={**fields, Field.BOARD_GENERATION: quiz.created_ms})
            await pipe.execute()

    async def _update(
        self, quiz_id: str, version_step: int, fields: dict[Field, str | int]
    ) -> None:
        args: list[str | int] = [version_step]
        for name, value in fields.items():
            args += [name.value, value]
        if not await self._update_state(keys=[self.keys(quiz_id).state], args=args):
            raise restoring(quiz_id)

    async def reveal(self, quiz_id: str, now: int) -> None:
        """Moves the totals of a closed question's answers onto the board; UNAVAILABLE
        while the state is lost (the rebuild then counts them)."""
        keys = self.keys(quiz_id)
        while True:
            left = await self._reveal(
                keys=[keys.state, keys.pending, keys.board, keys.changed],
                args=[REVEAL_CHUNK, now],
            )
            if left < 0:
                raise restoring(quiz_id)
            if left == 0:
                return

    async def open_question(self, quiz_id: str, index: int, opened: int, deadline: int) -> None:
        # The previous question's results first: its deadline has passed.
        await self.reveal(quiz_id, opened)
        # A snapshot shows the open question and its answer count: a new version.
        await self._update(
            quiz_id,
            1,
            {
                Field.STATUS: QuizState.RUNNING.value,
                Field.QUESTION: index,
                Field.OPENED_AT: opened,
                Field.DEADLINE: deadline,
            },
        )

    async def end_question(self, quiz_id: str, at: int) -> None:
        """The open question's deadline moves to `at` (the host ended it early):
        the answer script refuses answers after it as too late."""
        await self._update(quiz_id, 1, {Field.DEADLINE: at})
        await self.reveal(quiz_id, at)

    async def close(self, quiz_id: str, closed: int) -> None:
        # Ends the open question too: the answer script checks the status first.
        await self._update(
            quiz_id, 1, {Field.STATUS: QuizState.CLOSED.value, Field.CLOSED_AT: closed}
        )
        await self.reveal(quiz_id, closed)

    async def enrol(
        self, quiz_id: str, players: Sequence[tuple[str, str]], reached_ms: int
    ) -> None:
        """New players (id, nickname) at 0 points, ranked by `reached_ms` (their join
        time, counted from the quiz's creation); UNAVAILABLE while the state is lost."""
        keys = self.keys(quiz_id)
        args: list[EncodableT] = [pack(0, reached_ms)]
        for player_id, nickname in players:
            args += (player_id, nickname)
        enrol_keys = [keys.state, keys.board, keys.nicknames, keys.changed]
        if not await self._enrol(keys=enrol_keys, args=args):
            raise restoring(quiz_id)

    async def remove(self, quiz_id: str, player_ids: Sequence[str]) -> None:
        """Takes players off the board (a join whose SQL row did not commit)."""
        keys = self.keys(quiz_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.board, *player_ids)
            pipe.sadd(keys.changed, *player_ids)
            pipe.hdel(keys.nicknames, *player_ids)
            await pipe.execute()

    async def player_count(self, quiz_id: str) -> int | None:
        """Players on the board; None when the quiz has no live state."""
        keys = self.keys(quiz_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.state)
            pipe.zcard(keys.board)
            exists, count = await pipe.execute()
        return int(count) if exists else None

    async def choice_counts(self, quiz_id: str, question: int, choices: int) -> list[int]:
        """How many accepted answers to `question` chose each of its choices."""
        fields = [choice_count_field(question, c) for c in range(choices)]
        counts = await self.redis.hmget(self.keys(quiz_id).state, fields)
        return [int(n or 0) for n in counts]

    async def exists(self, quiz_id: str) -> bool:
        return bool(await self.redis.exists(self.keys(quiz_id).state))

    async def which_exist(self, quiz_ids: Sequence[str]) -> list[bool]:
        """For each quiz, whether it has live state, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for quiz_id in quiz_ids:
                pipe.exists(self.keys(quiz_id).state)
            return [bool(found) for found in await pipe.execute()]

    async def expire(self, quiz_id: str, seconds: int) -> None:
        """Lets a final quiz's live state go after `seconds` (served from SQL then)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.keys(quiz_id).all():
                pipe.expire(key, seconds)
            await pipe.execute()

    # Rebuilding a lost state (services/recovery).

    async def lock_rebuild(self, quiz_id: str, token: str, ms: int) -> bool:
        """Takes the quiz's rebuild lock for `ms`; False when another process holds it."""
        return bool(await self.redis.set(self.keys(quiz_id).recovering, token, nx=True, px=ms))

    async def unlock_rebuild(self, quiz_id: str, token: str) -> None:
        await self._release(keys=[self.keys(quiz_id).recovering], args=[token])

    async def take_offline(self, quiz_id: str) -> None:
        """Removes the state hash: every part then waits for a rebuild."""
        await self.redis.delete(self.keys(quiz_id).state)

    async def write_rebuilt(self, rebuilt: RebuiltState) -> None:
        """Replaces a quiz's live state with a rebuilt one. The state hash goes last:
        until it exists, every part treats the quiz as missing. Its version jumps
        to the current time in ms, so watchers take the rebuilt board as newer than any they saw."""
        quiz = rebuilt.quiz
        keys = self.keys(quiz.id)
        await self.redis.delete(*keys.all())
        if rebuilt.questions:
            await self.redis.hset(keys.questions, mapping=question_specs(rebuilt.questions))
        players = list(rebuilt.nicknames.items())
        for i in range(0, len(players), CHUNK):
            part = players[i : i + CHUNK]
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(keys.nicknames, mapping=dict(part))
                board = {pid: pack(*rebuilt.scores.get(pid, (0, 0))) for pid, _ in part}
                pipe.zadd(keys.board, board)
                waiting = {p: pack(*rebuilt.pending[p]) for p, _ in part if p in rebuilt.pending}
                if waiting:
                    pipe.zadd(keys.pending, waiting)
                await pipe.execute()
        answers = list(rebuilt.answers.items())
        for i in range(0, len(answers), CHUNK):
            await self.redis.hset(keys.answers, mapping=dict(answers[i : i + CHUNK]))
        state = state_fields(quiz)
        # Copies of the old board elsewhere are of an older generation: read afresh.
        state[Field.VERSION] = state[Field.BOARD_GENERATION] = now_ms()
        state.update({answer_count_field(q): n for q, n in rebuilt.answer_counts.items()})
        state.update({choice_count_field(q, c): n for (q, c), n in rebuilt.choice_counts.items()})
        if rebuilt.changed_at is not None:
            state[Field.CHANGED_AT] = rebuilt.changed_at
        await self.redis.hset(keys.state, mapping=state)
