"""Players joining a quiz: one at a time (JoinQuiz) or many at once (`quizctl
enrol`), each writing the same rows and keys: a `players` row, and on the live
board 0 points at the join time with the nickname. The Redis write runs inside
the SQL transaction, so a failed one rolls the rows back; rows that fail to
commit take their board entries with them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from services import ids
from services.database.records import QuizRecord, QuizState
from services.live.quizzes import LiveQuizzes
from services.mesh.clock import now_ms
from services.mesh.errors import FailedPrecondition, Reason
from services.quiz import rules
from services.quiz.store import QuizStore

# Players per SQL transaction and Redis script call (a few ms of Redis time each).
ENROL_BATCH = 5_000
# While one batch is inside MySQL the next is prepared and sent: about twice the
# rate of one at a time, on two cores.
ENROL_IN_FLIGHT = 3


def refuse_closed(quiz: QuizRecord, late: bool = False) -> None:
    """Joining is open before the start, and while the quiz runs if it allows late
    joiners (`late`: the call may use that), unless the host locked the lobby."""
    if quiz.state is QuizState.CLOSED:
        raise FailedPrecondition(
            f"quiz {quiz.id} is over; joining is closed", Reason.ERROR_REASON_QUIZ_CLOSED
        )
    if quiz.state is QuizState.RUNNING and not (late and quiz.allow_late_join):
        raise FailedPrecondition(
            f"quiz {quiz.id} has already started; joining is closed",
            Reason.ERROR_REASON_QUIZ_ALREADY_STARTED,
        )
    if quiz.lobby_locked:
        raise FailedPrecondition(
            f"the host has locked quiz {quiz.id}: nobody can join now; ask the host",
            Reason.ERROR_REASON_LOBBY_LOCKED,
        )


class Joining:
    def __init__(self, store: QuizStore, live: LiveQuizzes) -> None:
        self.store = store
        self.live = live

    async def join(self, quiz: QuizRecord, nickname: str) -> str:
        """A new player of a quiz that lets them join; their id. DuplicateKey for a
        taken nickname. A late joiner starts from 0, as everyone did."""
        refuse_closed(quiz, late=True)
        player_id = ids.new_player_id()
        await self._add(quiz, [(player_id, nickname)])
        return player_id

    async def enrol(
        self,
        quiz_id: str,
        nicknames: Sequence[str],
        batch_size: int = ENROL_BATCH,
        progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        """JoinQuiz in bulk (load tests, imports), in batches that each commit their
        SQL rows with their Redis writes; the new player ids in order. Nothing is
        announced: the caller hints the leaderboard once at the end.

        If a batch fails (a nickname taken, a dependency away), the batches still in
        flight are cancelled and the error raised; batches that committed stay, like
        joins that succeeded before a failed one."""
        quiz = await self.store.get(quiz_id)
        refuse_closed(quiz)
        in_flight = asyncio.Semaphore(ENROL_IN_FLIGHT)
        done = 0

        async def one(start: int) -> list[str]:
            nonlocal done
            async with in_flight:
                names = [rules.nickname(n) for n in nicknames[start : start + batch_size]]
                batch = [(ids.new_player_id(), name) for name in names]
                await self._add(quiz, batch)
            done += len(batch)
            if progress is not None:
                progress(done)
            return [player_id for player_id, _ in batch]

        tasks = [asyncio.create_task(one(start)) for start in range(0, len(nicknames), batch_size)]
        player_ids: list[str] = []
        try:
            for task in tasks:
                player_ids += await task
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return player_ids

    async def _add(self, quiz: QuizRecord, players: list[tuple[str, str]]) -> None:
        joined = now_ms()
        try:
            async with self.store.engine.begin() as conn:
                await self.store.add_players(conn, quiz.id, players, joined)
                await self.live.enrol(quiz.id, players, joined - quiz.created_ms)
        except BaseException:
            await self.live.remove(quiz.id, [player_id for player_id, _ in players])
            raise
