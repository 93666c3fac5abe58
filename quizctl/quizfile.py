"""Quiz files: the YAML or JSON a host writes, checked and turned into a CreateQuizRequest.

Every mistake is reported as ``FILE: FIELD: what is wrong`` and all of them at
once, so a host fixes the file in one pass instead of one error per run. The
limits mirror the contract (proto/quizmesh/quiz/v1/quiz.proto); the quiz service
checks them again, this only saves a round trip and names the line to fix.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from quizmesh.quiz.v1 import quiz_pb2

MAX_TITLE_CHARS = 200
MAX_QUESTIONS = 100
MIN_CHOICES, MAX_CHOICES = 2, 6
INT32_MAX = 2**31 - 1

QUIZ_FIELDS = ("title", "questions")
QUESTION_FIELDS = (
    "text",
    "choices",
    "correct_choice",
    "answer",
    "points",
    "time_limit_ms",
    "time_limit_seconds",
)


class QuizFileError(Exception):
    """A quiz file that cannot be sent; ``problems`` lists every mistake found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_quiz_file(path: str) -> quiz_pb2.CreateQuizRequest:
    """Reads ``path`` (``-`` for stdin) and returns the request it describes."""
    name = "<stdin>" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QuizFileError([f"{name}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise QuizFileError([f"{name}: cannot read: {e}"]) from None
    return parse_quiz(parse_document(text, name), name)


def parse_document(text: str, name: str) -> Any:
    """JSON for ``*.json``, YAML for anything else; syntax errors name the line."""
    if name.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise QuizFileError([f"{name}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise QuizFileError([f"{where}: invalid YAML: {e.problem or e.context}"]) from None
    except yaml.YAMLError as e:
        raise QuizFileError([f"{name}: invalid YAML: {e}"]) from None


def parse_quiz(document: Any, name: str) -> quiz_pb2.CreateQuizRequest:
    """Checks a loaded document's shape and builds the CreateQuizRequest."""
    problems = _Problems(name)
    if not isinstance(document, Mapping):
        problems.add("", f"must be a mapping with {_names(QUIZ_FIELDS)}, got {_kind(document)}")
        raise QuizFileError(problems.items)
    problems.unknown_fields("", document, QUIZ_FIELDS)

    request = quiz_pb2.CreateQuizRequest()
    title = _text(problems, "title", document.get("title"))
    if title is not None and len(title) > MAX_TITLE_CHARS:
        problems.add("title", f"must be at most {MAX_TITLE_CHARS} characters, got {len(title)}")
    elif title is not None:
        request.title = title

    questions = document.get("questions")
    if questions is None:
        problems.add("questions", "is missing: a quiz needs at least one question")
    elif not isinstance(questions, list):
        problems.add("questions", f"must be a list of questions, got {_kind(questions)}")
    elif not 1 <= len(questions) <= MAX_QUESTIONS:
        problems.add("questions", f"must have 1-{MAX_QUESTIONS} questions, got {len(questions)}")
    else:
        for index, question in enumerate(questions):
            spec = _question(problems, f"questions[{index}]", question)
            if spec is not None:
                request.questions.append(spec)

    if problems.items:
        raise QuizFileError(problems.items)
    return request


def _question(problems: _Problems, where: str, question: Any) -> quiz_pb2.QuestionSpec | None:
    if not isinstance(question, Mapping):
        problems.add(where, f"must be a mapping with text and choices, got {_kind(question)}")
        return None
    before = len(problems.items)
    problems.unknown_fields(where, question, QUESTION_FIELDS)
    text = _text(problems, f"{where}.text", question.get("text"))
    choices = _choices(problems, f"{where}.choices", question.get("choices"))
    correct = _correct_choice(problems, where, question, choices)
    points = _positive_int(problems, f"{where}.points", question.get("points"))
    time_limit_ms = _time_limit_ms(problems, where, question)
    if len(problems.items) > before or text is None or choices is None or correct is None:
        return None
    spec = quiz_pb2.QuestionSpec(text=text, choices=choices, correct_choice=correct)
    if points is not None:
        spec.points = points
    if time_limit_ms is not None:
        spec.time_limit_ms = time_limit_ms
    return spec


def _choices(problems: _Problems, where: str, value: Any) -> list[str] | None:
    if value is None:
        problems.add(where, f"is missing: give {MIN_CHOICES}-{MAX_CHOICES} choices")
        return None
    if not isinstance(value, list):
        problems.add(
            where, f"must be a list of {MIN_CHOICES}-{MAX_CHOICES} texts, got {_kind(value)}"
        )
        return None
    if not MIN_CHOICES <= len(value) <= MAX_CHOICES:
        problems.add(where, f"must have {MIN_CHOICES}-{MAX_CHOICES} choices, got {len(value)}")
        return None
    choices = [_text(problems, f"{where}[{i}]", choice) for i, choice in enumerate(value)]
    texts = [c for c in choices if c is not None]
    if len(texts) != len(choices):
        return None
    duplicates = sorted({c for c in texts if texts.count(c) > 1})
    if duplicates:
        problems.add(where, f"must all differ; repeated: {_quoted(duplicates)}")
        return None
    return texts


def _correct_choice(
    problems: _Problems, where: str, question: Mapping[str, Any], choices: list[str] | None
) -> int | None:
    has_index, has_answer = "correct_choice" in question, "answer" in question
    if has_index and has_answer:
        problems.add(where, "give either correct_choice or answer, not both")
        return None
    if not has_index and not has_answer:
        problems.add(
            where,
            "names no correct choice: add correct_choice (0-based index) "
            "or answer (the exact text of the right choice)",
        )
        return None
    if has_answer:
        answer = _text(problems, f"{where}.answer", question["answer"])
        if answer is None or choices is None:
            return None
        if answer not in choices:
            close = difflib.get_close_matches(answer, choices, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; choices are {_quoted(choices)}"
            problems.add(f"{where}.answer", f"{answer!r} is not one of the choices{hint}")
            return None
        return choices.index(answer)
    index = question["correct_choice"]
    if not _is_int(index):
        problems.add(f"{where}.correct_choice", f"must be a 0-based integer, got {_kind(index)}")
        return None
    if choices is None:
        return None
    if not 0 <= index < len(choices):
        problems.add(
            f"{where}.correct_choice",
            f"must be 0-{len(choices) - 1} (0-based index into {len(choices)} choices), "
            f"got {index}",
        )
        return None
    return int(index)


def _time_limit_ms(problems: _Problems, where: str, question: Mapping[str, Any]) -> int | None:
    if "time_limit_ms" in question and "time_limit_seconds" in question:
        problems.add(where, "give either time_limit_ms or time_limit_seconds, not both")
        return None
    if "time_limit_seconds" not in question:
        return _positive_int(problems, f"{where}.time_limit_ms", question.get("time_limit_ms"))
    seconds = question["time_limit_seconds"]
    is_number = _is_int(seconds) or isinstance(seconds, float)
    # NaN fails the comparison too; the upper bound keeps the milliseconds an int32.
    if not is_number or not 0.001 <= seconds <= INT32_MAX // 1000:
        problems.add(
            f"{where}.time_limit_seconds",
            f"must be a positive number of seconds, got {_kind(seconds)}",
        )
        return None
    return round(float(seconds) * 1000)


def _positive_int(problems: _Problems, where: str, value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or not 1 <= value <= INT32_MAX:
        problems.add(where, f"must be a positive integer, got {_kind(value)}")
        return None
    return int(value)


def _text(problems: _Problems, where: str, value: Any) -> str | None:
    if value is None:
        problems.add(where, "is missing")
        return None
    if not isinstance(value, str):
        # YAML reads unquoted yes/no/on/off as booleans and 42 as a number.
        problems.add(where, f"must be text, got {_kind(value)}; put it in quotes")
        return None
    if not value.strip():
        problems.add(where, "must not be empty")
        return None
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int | float):
        return f"{value} (a number)"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _names(items: tuple[str, ...]) -> str:
    return ", ".join(items)


def _quoted(items: list[str]) -> str:
    return ", ".join(repr(i) for i in items)


class _Problems:
    """Collects ``FILE: FIELD: message`` lines."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(
            f"{self.name}: {where}: {message}" if where else f"{self.name}: {message}"
        )

    def unknown_fields(self, where: str, value: Mapping[Any, Any], known: tuple[str, ...]) -> None:
        for key in value:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"expected {_names(known)}"
            field = f"{where}.{key}" if where else str(key)
            self.add(field, f"unknown field; {hint}")
