"""The web client's quiz-file reader (web/js/quizfile.js), run in Chromium, holds a
pasted quiz to the contract's limits (web/js/generated/contract.js)."""

from __future__ import annotations

from typing import Any

from quizmesh.quiz.v1 import quiz_pb2

from services.mesh.validation import rules_of
from tests.browser.conftest import OpenUser


async def test_quizfile_js_holds_a_pasted_quiz_to_the_contracts_numbers(
    open_user: OpenUser,
) -> None:
    """The browser's quiz-file reader refuses one past each limit, naming the number,
    and accepts a quiz at the limits (run in the page, as the host screen runs it)."""
    quiz = rules_of(quiz_pb2.CreateQuizRequest.DESCRIPTOR, "title")
    text = rules_of(quiz_pb2.QuestionSpec.DESCRIPTOR, "text")
    choices = rules_of(quiz_pb2.QuestionSpec.DESCRIPTOR, "choices")
    points = rules_of(quiz_pb2.QuestionSpec.DESCRIPTOR, "points")
    time = rules_of(quiz_pb2.QuestionSpec.DESCRIPTOR, "time_limit_ms")

    def document(extra: int) -> dict[str, Any]:
        return {
            "title": "😀" * (quiz.max_len + extra),  # code points, not UTF-16 units
            "questions": [
                {
                    "text": "q" * (text.max_len + extra),
                    "choices": [str(c) for c in range(choices.max_items + extra)],
                    "correct_choice": 0,
                    "points": points.lte + extra,
                    "time_limit_seconds": time.lte / 1000 + extra,
                }
            ],
        }

    host = await open_user("host")
    await host.page.goto("/")
    at_limits, past_limits = await host.page.evaluate(
        """async (docs) => {
            const { parseQuizText } = await import("/js/quizfile.js");
            return docs.map((doc) => {
                try { return parseQuizText(JSON.stringify(doc)); }
                catch (e) { return e.problems ?? String(e); }
            });
        }""",
        [document(0), document(1)],
    )

    assert at_limits["questions"][0]["points"] == points.lte
    assert at_limits["questions"][0]["time_limit_ms"] == time.lte
    assert past_limits == [
        f"title: must be at most {quiz.max_len} characters, got {quiz.max_len + 1}",
        f"questions[0].text: must be at most {text.max_len} characters, got {text.max_len + 1}",
        f"questions[0].choices: must be a list of {choices.min_items}-{choices.max_items} "
        f"texts, got {choices.max_items + 1}",
        f"questions[0].points: must be an integer {points.gte}-{points.lte}, "
        f"got {points.lte + 1} (a number)",
        f"questions[0].time_limit_seconds: must be {time.gte // 1000}-{time.lte // 1000} "
        f"seconds, got {time.lte // 1000 + 1} (a number)",
    ]
