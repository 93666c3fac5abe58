"""The web client's quiz-file reader (web/js/quizfile.js), run in Chromium, holds a
pasted quiz to the contract's limits (web/js/generated/contract.js) and reads what
quizctl's reader (quizctl/quizfile.py) reads."""

from __future__ import annotations

from typing import Any

from quizmesh.quiz.v1 import quiz_pb2

from quizctl.quizfile import QuizFileError, parse_document, parse_quiz
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


QUESTION_YAML = "questions:\n  - text: Q\n    choices: [a, b]\n    correct_choice: 0\n"
QUESTION_JSON = '"questions": [{"text": "Q", "choices": ["a", "b"], "correct_choice": 0}]'
INSTANT_FEEDBACK_FILES = {
    "absent": f"title: T\n{QUESTION_YAML}",
    "true": f"title: T\ninstant_feedback: true\n{QUESTION_YAML}",
    "yes": f"title: T\ninstant_feedback: yes\n{QUESTION_YAML}",  # YAML 1.1, as PyYAML reads it
    "false": f'{{"title": "T", "instant_feedback": false, {QUESTION_JSON}}}',
    "number": f'{{"title": "T", "instant_feedback": 1, {QUESTION_JSON}}}',
    "empty": f"title: T\ninstant_feedback:\n{QUESTION_YAML}",
}


async def test_quizfile_js_and_quizctl_read_instant_feedback_alike(open_user: OpenUser) -> None:
    """Absent is false, a boolean is taken as written, anything else is refused with
    the same message by the browser's reader and by quizctl's."""

    def quizctl(text: str) -> bool | list[str]:
        name = "quiz.json" if text.startswith("{") else "quiz.yaml"
        try:
            return parse_quiz(parse_document(text, name), name).instant_feedback
        except QuizFileError as e:
            return [p.removeprefix(f"{name}: ") for p in e.problems]

    host = await open_user("host")
    await host.page.goto("/")
    in_browser = await host.page.evaluate(
        """async (texts) => {
            const { parseQuizText } = await import("/js/quizfile.js");
            return texts.map((text) => {
                try { return parseQuizText(text).instant_feedback; }
                catch (e) { return e.problems ?? String(e); }
            });
        }""",
        list(INSTANT_FEEDBACK_FILES.values()),
    )

    by_quizctl = [quizctl(text) for text in INSTANT_FEEDBACK_FILES.values()]
    assert dict(zip(INSTANT_FEEDBACK_FILES, in_browser, strict=True)) == {
        "absent": False,
        "true": True,
        "yes": True,
        "false": False,
        "number": ["instant_feedback: must be true or false, got 1 (a number)"],
        "empty": ["instant_feedback: must be true or false, got nothing"],
    }
    assert in_browser == by_quizctl
