"""The quiz list pages newest first with cursor tokens: a quiz created between two
reads shifts no later page (an offset would show the first page's last quiz again)."""

from __future__ import annotations

import pytest

from tests.api import GrpcApi
from tests.game import REFERENCE_QUIZ
from tests.stack import Stack


@pytest.fixture
def api(stack: Stack) -> GrpcApi:
    return GrpcApi(stack.channels)


async def test_a_quiz_created_between_two_pages_repeats_none(api: GrpcApi, stack: Stack) -> None:
    host = stack.host_token("alice")
    for _ in range(5):
        await api.call("CreateQuiz", REFERENCE_QUIZ, host)
    first = await api.call("ListQuizzes", {"page_size": 2})

    await api.call("CreateQuiz", REFERENCE_QUIZ, host)  # newest: it goes on top
    second = await api.call("ListQuizzes", {"page_size": 2, "page_token": first["next_page_token"]})

    seen = [q["quiz_id"] for q in first["quizzes"]]
    more = [q["quiz_id"] for q in second["quizzes"]]
    assert len(seen) == len(more) == 2
    assert not set(seen) & set(more), "a quiz was listed twice"
    created = [q["create_time"] for q in first["quizzes"] + second["quizzes"]]
    assert created == sorted(created, reverse=True)
