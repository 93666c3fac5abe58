"""The migrations build exactly the tables the code declares, on MariaDB and on
SQLite, and both databases agree on which nicknames are the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import column, insert, select, table
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.database.engine import create_engine
from services.database.migrate import upgrade
from services.database.tables import metadata, players
from services.quiz.library_store import LibraryStore
from services.quiz.store import DuplicateKey, QuizStore
from tests.conftest import private_database
from tests.stack import Backends

# The players table as revision 0002 left it.
PLAYERS_0002 = table(
    "players", column("id"), column("quiz_id"), column("nickname"), column("joined_ms")
)

QUESTIONS_0001 = table(
    "questions",
    *(column(name) for name in ("quiz_id", "idx", "text", "choices", "correct_choice")),
    column("points"),
    column("time_limit_ms"),
)

# The columns of a quiz row every revision since 0001 has (without defaults there).
QUIZZES_0001 = table(
    "quizzes",
    *(column(name) for name in ("id", "title", "host", "state", "question_count")),
    *(column(name) for name in ("current_question", "closed_question", "close_reason")),
    column("created_ms"),
)


@pytest.fixture(params=["mysql", "sqlite"])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, backends: Backends
) -> AsyncIterator[str]:
    """An empty database of our own (not migrated): on the suite's MySQL server
    (the configured one, or a private MariaDB), and on SQLite."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}"
        return
    async with private_database(backends.mysql_server_url, migrate=False) as url:
        yield url


@pytest.fixture
async def engine(database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database)
    yield engine
    await engine.dispose()


def differences(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


async def test_the_migrations_build_the_declared_tables(database: str, engine: AsyncEngine) -> None:
    await upgrade(database)

    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []


async def add_quiz(engine: AsyncEngine, quiz_id: str) -> None:
    """A quiz row as any revision takes it."""
    async with engine.begin() as conn:
        await conn.execute(
            insert(QUIZZES_0001).values(
                id=quiz_id,
                title="t",
                host="h",
                state="OPEN",
                question_count=1,
                current_question=-1,
                closed_question=-1,
                close_reason=0,
                created_ms=1,
            )
        )


async def test_quizzes_made_before_instant_feedback_existed_keep_telling_at_once(
    database: str, engine: AsyncEngine
) -> None:
    await upgrade(database, "0005")
    await add_quiz(engine, "OLD1")

    await upgrade(database)
    await add_quiz(engine, "NEW1")

    store = QuizStore(engine)
    assert (await store.get("OLD1")).instant_feedback is True
    assert (await store.get("NEW1")).instant_feedback is False


async def test_each_quiz_made_before_the_library_becomes_a_library_quiz_and_its_game(
    database: str, engine: AsyncEngine
) -> None:
    await upgrade(database, "0007")
    await add_quiz(engine, "OLD1")
    async with engine.begin() as conn:
        await conn.execute(
            insert(QUESTIONS_0001).values(
                quiz_id="OLD1",
                idx=0,
                text="2 + 2?",
                choices='["3", "4"]',
                correct_choice=1,
                points=700,
                time_limit_ms=15_000,
            )
        )

    await upgrade(database)

    game = await QuizStore(engine).get("OLD1")
    assert game.library_quiz_id is not None
    kept = await LibraryStore(engine).get(game.library_quiz_id)
    assert (kept.host, kept.title, kept.version) == ("h", "t", 1)
    # What the game played, explicitly: the library quiz plays exactly as it did.
    assert kept.content["questions"] == [
        {
            "text": "2 + 2?",
            "choices": ["3", "4"],
            "correct_choice": 1,
            "points": 700,
            "time_limit_ms": 15_000,
        }
    ]
    assert await LibraryStore(engine).games_played([kept.id]) == {kept.id: 1}


async def join(store: QuizStore, quiz_id: str, player_id: str, nickname: str) -> None:
    async with store.engine.begin() as conn:
        await store.add_players(conn, quiz_id, [(player_id, nickname)], joined_ms=1)


@pytest.mark.parametrize(
    ("first", "second"),
    [("Ann", "ann"), ("ZOË", "zoë"), ("\uff22\uff4f\uff42", "bob"), ("straße", "STRASSE")],
)
async def test_nicknames_that_differ_in_case_or_width_are_the_same(
    database: str, engine: AsyncEngine, first: str, second: str
) -> None:
    await upgrade(database)
    await add_quiz(engine, "QUIZ1")
    store = QuizStore(engine)
    await join(store, "QUIZ1", "p1", first)

    with pytest.raises(DuplicateKey):
        await join(store, "QUIZ1", "p2", second)


async def test_nicknames_that_differ_in_accents_are_different_people(
    database: str, engine: AsyncEngine
) -> None:
    await upgrade(database)
    await add_quiz(engine, "QUIZ1")
    store = QuizStore(engine)

    await join(store, "QUIZ1", "p1", "José")
    await join(store, "QUIZ1", "p2", "Jose")

    async with engine.connect() as conn:
        names = (await conn.execute(select(players.c.nickname).order_by(players.c.id))).scalars()
        assert list(names) == ["José", "Jose"]


async def test_upgrading_keeps_players_whose_names_now_collide(
    database: str, engine: AsyncEngine
) -> None:
    """Before revision 0003, SQLite told "Ann" from "ann": both players stay, and
    the name is taken for anyone who joins later."""
    await upgrade(database, "0002")
    await add_quiz(engine, "QUIZ1")
    async with engine.begin() as conn:
        await conn.execute(
            insert(PLAYERS_0002).values(id="p1", quiz_id="QUIZ1", nickname="Ann", joined_ms=1)
        )
    if database.startswith("sqlite"):
        async with engine.begin() as conn:
            await conn.execute(
                insert(PLAYERS_0002).values(id="p2", quiz_id="QUIZ1", nickname="ann", joined_ms=1)
            )

    await upgrade(database)

    store = QuizStore(engine)
    with pytest.raises(DuplicateKey):
        await join(store, "QUIZ1", "p3", "ANN")
    async with engine.connect() as conn:
        kept = (await conn.execute(select(players.c.id).order_by(players.c.id))).scalars()
        assert len(list(kept)) == (2 if database.startswith("sqlite") else 1)
