"""`quizctl enrol QUIZ --count N`: enrols N players in an open quiz at once (load
tests, rehearsals), writing exactly what N JoinQuiz calls would, straight to the
database and Redis (QUIZMESH_DATABASE_URL, QUIZMESH_REDIS_URL, QUIZMESH_NATS_URL,
prefixes), far faster than N calls: a million players in well under a minute."""

from __future__ import annotations

from collections.abc import Callable

from services import ids
from services.database.engine import create_engine
from services.live.quizzes import LiveQuizzes
from services.mesh.config import CommonSettings
from services.mesh.connections import Connections
from services.quiz.announcer import Announcer
from services.quiz.joining import ENROL_BATCH, Joining
from services.quiz.store import QuizStore


async def enrol(
    quiz_id: str,
    nicknames: list[str],
    settings: CommonSettings,
    batch_size: int = ENROL_BATCH,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """The new players' ids, in the order of `nicknames`."""
    engine = create_engine(settings.database_url)
    conn = await Connections.open(settings, "quizctl")
    try:
        code = ids.quiz_code(quiz_id)
        joining = Joining(QuizStore(engine), LiveQuizzes(conn.redis, settings.key_prefix))
        player_ids = await joining.enrol(code, nicknames, batch_size, progress)
        # One hint for all of them, where JoinQuiz sends one per player.
        await Announcer(conn.nc, conn.js, conn.subjects).board_changed(code)
        return player_ids
    finally:
        await conn.close()
        await engine.dispose()
