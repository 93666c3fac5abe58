"""The web client's quiz-file reader (web/js/quizfile.js), run in Chromium, holds a
pasted quiz to the contract's limits (web/js/generated/contract.js) and reads what
quizctl's reader (quizctl/quizfile.py) reads."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format
from quizmesh.quiz.v1 import quiz_pb2

from devstack.gateway import REPO
from quizctl.quizfile import QuizFileError, load_quiz_file, parse_document, parse_quiz
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


def flag_files(flag: str) -> dict[str, str]:
    return {
        "absent": f"title: T\n{QUESTION_YAML}",
        "true": f"title: T\n{flag}: true\n{QUESTION_YAML}",
        "yes": f"title: T\n{flag}: yes\n{QUESTION_YAML}",  # YAML 1.1, as PyYAML reads it
        "false": f'{{"title": "T", "{flag}": false, {QUESTION_JSON}}}',
        "number": f'{{"title": "T", "{flag}": 1, {QUESTION_JSON}}}',
        "empty": f"title: T\n{flag}:\n{QUESTION_YAML}",
    }


@pytest.mark.parametrize("flag", ["instant_feedback", "allow_late_join"])
async def test_quizfile_js_and_quizctl_read_the_quiz_flags_alike(
    open_user: OpenUser, flag: str
) -> None:
    """Absent is false, a boolean is taken as written, anything else is refused with
    the same message by the browser's reader and by quizctl's."""
    files = flag_files(flag)

    def quizctl(text: str) -> bool | list[str]:
        name = "quiz.json" if text.startswith("{") else "quiz.yaml"
        try:
            return bool(getattr(parse_quiz(parse_document(text, name), name), flag))
        except QuizFileError as e:
            return [p.removeprefix(f"{name}: ") for p in e.problems]

    host = await open_user("host")
    await host.page.goto("/")
    in_browser = await host.page.evaluate(
        """async ([texts, flag]) => {
            const { parseQuizText } = await import("/js/quizfile.js");
            return texts.map((text) => {
                try { return parseQuizText(text)[flag]; }
                catch (e) { return e.problems ?? String(e); }
            });
        }""",
        [list(files.values()), flag],
    )

    by_quizctl = [quizctl(text) for text in files.values()]
    assert dict(zip(files, in_browser, strict=True)) == {
        "absent": False,
        "true": True,
        "yes": True,
        "false": False,
        "number": [f"{flag}: must be true or false, got 1 (a number)"],
        "empty": [f"{flag}: must be true or false, got nothing"],
    }
    assert in_browser == by_quizctl


# Texts YAML would read as something else, or that end a plain scalar early.
AWKWARD: dict[str, Any] = {
    "title": "Quiz: yes, no & the rest # not a comment",
    "allow_late_join": True,
    "questions": [
        {
            "text": "- Which one?",
            "choices": ["yes", "3", "a, b", "Why?", 'say "hi"', "It's"],
            "correct_choice": 3,
        },
        {
            "text": "Ünïcödé 😀 [brackets] {braces}",
            "choices": ["null", "~", "1969-07-20", "  padded  ", "tab\there", "line\u2028break"],
            "correct_choice": 0,
            "points": 0,
            "time_limit_ms": 1000,
        },
    ],
}


@pytest.mark.parametrize("quiz_file", ["examples/quiz.yaml", "awkward"])
async def test_a_quiz_file_written_by_quizfile_js_reads_back_the_same_in_both_readers(
    open_user: OpenUser, quiz_file: str
) -> None:
    """What the library's Export downloads (quizFileText) is read by quizctl and by
    the browser into the quiz it was written from."""
    if quiz_file == "awkward":
        quiz = AWKWARD
    else:
        request = load_quiz_file(str(REPO / quiz_file))
        quiz = json_format.MessageToDict(request, preserving_proto_field_name=True)
    host = await open_user("host")
    await host.page.goto("/")
    text, read_in_browser = await host.page.evaluate(
        """async (quiz) => {
            const { parseQuizText, quizFileText } = await import("/js/quizfile.js");
            const text = quizFileText(quiz);
            return [text, parseQuizText(text)];
        }""",
        quiz,
    )

    read_by_quizctl = parse_quiz(parse_document(text, "quiz.yaml"), "quiz.yaml")
    assert json_format.MessageToDict(read_by_quizctl, preserving_proto_field_name=True) == quiz
    # The browser's reader trims texts, as the server stores them.
    trimmed = [[c.strip() for c in q["choices"]] for q in quiz["questions"]]
    assert [q["choices"] for q in read_in_browser["questions"]] == trimmed
    assert read_in_browser["title"] == quiz["title"]
    assert read_in_browser["allow_late_join"] == quiz.get("allow_late_join", False)
