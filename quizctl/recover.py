"""`quizctl recover QUIZ`: an operator's rebuild of a quiz's live Redis state from
SQL plus the JetStream record, talking to Redis, NATS and the database directly
(QUIZMESH_REDIS_URL, QUIZMESH_NATS_URL, QUIZMESH_DATABASE_URL, prefixes)."""

from __future__ import annotations

from services import ids
from services.database.engine import create_engine
from services.database.records import QuizRecords
from services.live.quizzes import LiveQuizzes
from services.mesh.config import CommonSettings
from services.mesh.connections import Connections
from services.recovery.live_state import LiveStateRecovery, Rebuilt


async def recover(quiz_id: str, settings: CommonSettings) -> Rebuilt | None:
    engine = create_engine(settings.database_url)
    conn = await Connections.open(settings, "quizctl")
    try:
        live = LiveQuizzes(conn.redis, settings.key_prefix)
        recovery = LiveStateRecovery.of(QuizRecords(engine), live, conn, settings)
        return await recovery.rebuild(ids.quiz_code(quiz_id), force=True)
    finally:
        await conn.close()
        await engine.dispose()
