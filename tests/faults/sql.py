"""SQL readers of the synced database and the checks of SQL against the answer log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from services.database.engine import create_engine
from tests.faults.game import Game
from tests.faults.standings import Standing, differences, ranked


async def sql_rows(database_url: str, query: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(query), params)).all())
    finally:
        await engine.dispose()


async def sql_standings(database_url: str, quiz_id: str) -> list[Standing]:
    rows = await sql_rows(
        database_url,
        "SELECT player_id, score, reached_ms FROM scores WHERE quiz_id = :quiz "
        "ORDER BY score DESC, reached_ms ASC, player_id DESC",
        quiz=quiz_id,
    )
    return [Standing(r.player_id, int(r.score), int(r.reached_ms)) for r in rows]


async def sql_answers(database_url: str, quiz_id: str) -> dict[tuple[str, int], tuple[Any, ...]]:
    rows = await sql_rows(
        database_url,
        "SELECT player_id, question_idx, choice, correct, points, answered_ms "
        "FROM answers WHERE quiz_id = :quiz",
        quiz=quiz_id,
    )
    found: dict[tuple[str, int], tuple[Any, ...]] = {}
    for r in rows:
        key = (r.player_id, int(r.question_idx))
        assert key not in found, f"answer {key} stored twice"
        found[key] = (
            int(r.question_idx),
            int(r.choice),
            bool(r.correct),
            int(r.points),
            int(r.answered_ms),
        )
    return found


async def sql_answer_count(database_url: str, quiz_id: str) -> int:
    rows = await sql_rows(
        database_url, "SELECT COUNT(*) AS n FROM answers WHERE quiz_id = :quiz", quiz=quiz_id
    )
    return int(rows[0].n)


async def assert_sql_answers_match(database_url: str, game: Game) -> None:
    """SQL holds exactly the acknowledged answers, each once, as acknowledged."""
    answers = await sql_answers(database_url, game.quiz_id)
    logged = {key: ack.result for key, ack in game.log.acks.items()}
    missing = sorted(logged.keys() - answers.keys())
    extra = sorted(answers.keys() - logged.keys())
    changed = sorted(k for k in logged.keys() & answers.keys() if logged[k] != answers[k])
    summary = (
        f"SQL answers differ from the log: {len(missing)} missing {missing[:3]}, "
        f"{len(extra)} unknown {extra[:3]}, {len(changed)} changed "
        f"{[(k, answers[k], logged[k]) for k in changed[:3]]}"
    )
    assert not missing, summary
    assert not extra, summary
    assert not changed, summary


async def assert_sql_matches_the_log(
    database_url: str, game: Game, expected: list[Standing]
) -> None:
    """SQL holds exactly the acknowledged answers, and its scores rank the players
    exactly as the log does, down to the time each reached their total."""
    await assert_sql_answers_match(database_url, game)
    standings = await sql_standings(database_url, game.quiz_id)
    assert ranked(standings) == ranked(expected), differences(
        ranked(standings), ranked(expected), "SQL scores"
    )
    assert standings == expected, "SQL reached_ms differ: " + str(
        [(s, e) for s, e in zip(standings, expected, strict=True) if s != e][:5]
    )


async def quiz_is_final(database_url: str, quiz_id: str) -> bool:
    rows = await sql_rows(
        database_url, "SELECT board_final FROM quizzes WHERE id = :quiz", quiz=quiz_id
    )
    return bool(rows and rows[0].board_final)
