"""A watcher of a quiz that Redis does not hold learns why, so that a client knows
whether to retry: an unknown quiz is NOT_FOUND; a quiz whose live state Redis lost is
being restored (UNAVAILABLE, and the retry is served once it is); a quiz long over is
FAILED_PRECONDITION, pointing at its final leaderboard."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import delete, insert

from services.database.engine import create_engine
from services.database.tables import quizzes
from services.live.keys import QuizKeys
from tests.api import Api, ApiError, GrpcApi, HttpApi
from tests.game import REFERENCE_QUIZ, join
from tests.retry import until_available
from tests.stack import Stack

WATCHES = ["WatchLeaderboard", "WatchQuiz"]


async def first(api: Api, rpc: str, quiz_id: str) -> dict[str, Any]:
    """The first message of a watch."""
    async for reply in api.watch(rpc, {"quiz_id": quiz_id}):
        return reply
    raise AssertionError(f"{rpc} ended without a message")


async def refusal(api: Api, rpc: str, quiz_id: str) -> ApiError:
    with pytest.raises(ApiError) as refused:
        await first(api, rpc, quiz_id)
    return refused.value


@pytest.mark.parametrize("rpc", WATCHES)
async def test_a_watcher_of_an_unknown_quiz_is_told_it_does_not_exist(
    stack: Stack, rpc: str
) -> None:
    refused = await refusal(GrpcApi(stack.channels), rpc, "QNOSUCH00001")

    assert refused.code == grpc.StatusCode.NOT_FOUND
    assert refused.message == "quiz QNOSUCH00001 not found"


@pytest.mark.parametrize("rpc", WATCHES)
async def test_a_watcher_of_a_quiz_whose_live_state_redis_lost_retries_until_it_is_restored(
    stack: Stack, http: httpx.AsyncClient, redis_client: Redis, rpc: str
) -> None:
    grpc_api = GrpcApi(stack.channels)
    host = stack.host_token("alice")
    quiz_id = (await grpc_api.call("CreateQuiz", REFERENCE_QUIZ, host))["quiz"]["quiz_id"]
    await join(grpc_api, quiz_id, "tia")
    await grpc_api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    await redis_client.delete(*QuizKeys(stack.key_prefix, quiz_id).all())  # as an empty restart

    natively = await refusal(grpc_api, rpc, quiz_id)
    through_envoy = await refusal(HttpApi(http), rpc, quiz_id)  # what the web client sees
    restored = await until_available(lambda: first(grpc_api, rpc, quiz_id))

    assert natively.code == grpc.StatusCode.UNAVAILABLE
    assert natively.message == f"the live state of quiz {quiz_id} is being restored; retry"
    assert (through_envoy.code, through_envoy.http_status) == (grpc.StatusCode.UNAVAILABLE, 503)
    if rpc == "WatchLeaderboard":
        assert restored["snapshot"]["total_players"] == 1
    else:
        assert restored["event"]["quiz_started"]["question_count"] == 3


@pytest.mark.parametrize("rpc", WATCHES)
async def test_a_watcher_of_a_quiz_long_over_is_sent_to_its_final_leaderboard(
    stack: Stack, rpc: str
) -> None:
    quiz_id = f"F{uuid.uuid4().hex[:10].upper()}"
    engine = create_engine(stack.backends.database_url)
    try:
        async with engine.begin() as db:  # as the sync job leaves a finished quiz
            await db.execute(
                insert(quizzes).values(
                    id=quiz_id,
                    title="Long over",
                    host="alice",
                    state="CLOSED",
                    question_count=3,
                    current_question=2,
                    created_ms=1_760_000_000_000,
                    closed_ms=1_760_000_060_000,
                    board_final=True,
                )
            )
        refused = await refusal(GrpcApi(stack.channels), rpc, quiz_id)
    finally:
        async with engine.begin() as db:
            await db.execute(delete(quizzes).where(quizzes.c.id == quiz_id))
        await engine.dispose()

    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.message == (
        f"quiz {quiz_id} is over and has no live updates any more; "
        "its final leaderboard is at GetLeaderboard"
    )
