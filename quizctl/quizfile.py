"""Quiz files: the YAML or JSON a host writes, checked and turned into a CreateQuizRequest.

Every mistake is reported as ``FILE: FIELD: what is wrong`` and all of them at
once, so a host fixes the file in one pass instead of one error per run. The
limits are the contract's (proto/quizmesh/quiz/v1/quiz.proto), read from its
descriptors as the server's validation reads them; the quiz service checks them
again, this only saves a round trip and names the field to fix.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from quizmesh.quiz.v1 import quiz_pb2
from quizmesh.validate.v1 import validate_pb2

from services.mesh.validation import rules_of

# The contract's limits, one copy: change them in the proto, not here.
TITLE = rules_of(quiz_pb2.CreateQuizRequest.DESCRIPTOR, "title")
QUESTIONS = rules_of(quiz_pb2.CreateQuizRequest.DESCRIPTOR, "questions")
TEXT = rules_of(quiz_pb2.QuestionSpec.DESCRIPTOR, "text")
CHOICES = rules_of(quiz_pb2.QuestionSpec.DESCRIPTOR, "choices")  # .items: each choice
CORRECT_CHOICE = rules_of(quiz_pb2.QuestionSpec.DESCRIPTOR, "correct_choice")
POINTS = rules_of(quiz_pb2.QuestionSpec.DESCRIPTOR, "points")
TIME_LIMIT_MS = rules_of(quiz_pb2.QuestionSpec.DESCRIPTOR, "time_limit_ms")

QUIZ_FIELDS = ("title", "instant_feedback", "allow_late_join", "questions")
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
        problems.add("", f"must be a mapping with title and questions, got {_kind(document)}")
        raise QuizFileError(problems.items)
    problems.unknown_fields("", document, QUIZ_FIELDS)

    request = quiz_pb2.CreateQuizRequest()
    title = _text(problems, "title", document.get("title"), TITLE)
    if title is not None:
        request.title = title
    request.instant_feedback = _flag(problems, "instant_feedback", document)
    request.allow_late_join = _flag(problems, "allow_late_join", document)

    questions = document.get("questions")
    if questions is None:
        problems.add("questions", "is missing: a quiz needs at least one question")
    elif not isinstance(questions, list):
        problems.add("questions", f"must be a list of questions, got {_kind(questions)}")
    elif not _within(len(questions), *_items(QUESTIONS)):
        span = _span(*_items(QUESTIONS))
        problems.add("questions", f"must have {span} questions, got {len(questions)}")
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
    text = _text(problems, f"{where}.text", question.get("text"), TEXT)
    choices = _choices(problems, f"{where}.choices", question.get("choices"))
    correct = _correct_choice(problems, where, question, choices)
    points = _integer(problems, f"{where}.points", question.get("points"), POINTS)
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
    span = _span(*_items(CHOICES))
    if value is None:
        problems.add(where, f"is missing: give {span} choices")
        return None
    if not isinstance(value, list):
        problems.add(where, f"must be a list of {span} texts, got {_kind(value)}")
        return None
    if not _within(len(value), *_items(CHOICES)):
        problems.add(where, f"must have {span} choices, got {len(value)}")
        return None
    choices = [
        _text(problems, f"{where}[{i}]", choice, CHOICES.items) for i, choice in enumerate(value)
    ]
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
    low, high = _values(CORRECT_CHOICE)
    if has_answer:
        answer = _text(problems, f"{where}.answer", question["answer"])
        if answer is None or choices is None:
            return None
        if answer not in choices:
            close = difflib.get_close_matches(answer, choices, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; choices are {_quoted(choices)}"
            problems.add(f"{where}.answer", f"{answer!r} is not one of the choices{hint}")
            return None
        index = choices.index(answer)
        # Only possible if the contract allowed more choices than correct_choice reaches.
        if not _within(index, low, high):
            problems.add(
                f"{where}.answer",
                f"is choice {index} (0-based), but correct_choice must be {_span(low, high)}",
            )
            return None
        return index
    index = question["correct_choice"]
    if not _is_int(index):
        problems.add(f"{where}.correct_choice", f"must be a 0-based integer, got {_kind(index)}")
        return None
    if choices is None:
        if not _within(index, low, high):
            problems.add(f"{where}.correct_choice", f"must be {_span(low, high)}, got {index}")
        return None
    last = len(choices) - 1 if high is None else min(high, len(choices) - 1)
    if not _within(index, low, last):
        problems.add(
            f"{where}.correct_choice",
            f"must be {_span(low, last)} (0-based index into {len(choices)} choices), got {index}",
        )
        return None
    return int(index)


def _time_limit_ms(problems: _Problems, where: str, question: Mapping[str, Any]) -> int | None:
    if "time_limit_ms" in question and "time_limit_seconds" in question:
        problems.add(where, "give either time_limit_ms or time_limit_seconds, not both")
        return None
    if "time_limit_seconds" not in question:
        ms = question.get("time_limit_ms")
        return _integer(problems, f"{where}.time_limit_ms", ms, TIME_LIMIT_MS, " milliseconds")
    seconds = question["time_limit_seconds"]
    is_number = _is_int(seconds) or isinstance(seconds, float)
    # NaN and infinity are no number of seconds either.
    if not is_number or not math.isfinite(seconds) or seconds <= 0:
        problems.add(
            f"{where}.time_limit_seconds",
            f"must be a positive number of seconds, got {_kind(seconds)}",
        )
        return None
    # The contract counts milliseconds: convert, then check what will be sent.
    ms = round(float(seconds) * 1000)
    low, high = _values(TIME_LIMIT_MS)
    if not _within(ms, low, high):
        in_seconds = _span(_seconds(low), _seconds(high))
        problems.add(
            f"{where}.time_limit_seconds",
            f"must be {in_seconds} seconds, got {_kind(seconds)}",
        )
        return None
    return ms


def _flag(problems: _Problems, key: str, mapping: Mapping[str, Any]) -> bool:
    """An optional true or false (false when absent)."""
    if key not in mapping:
        return False
    value = mapping[key]
    if isinstance(value, bool):
        return value
    problems.add(key, f"must be true or false, got {_kind(value)}")
    return False


def _integer(
    problems: _Problems,
    where: str,
    value: Any,
    rules: validate_pb2.FieldRules,
    unit: str = "",
) -> int | None:
    """An optional integer within the rules' gte/lte."""
    if value is None:
        return None
    low, high = _values(rules)
    if not _is_int(value) or not _within(value, low, high):
        span = f" {_span(low, high)}{unit}" if low is not None or high is not None else ""
        problems.add(where, f"must be an integer{span}, got {_kind(value)}")
        return None
    return int(value)


def _text(
    problems: _Problems,
    where: str,
    value: Any,
    rules: validate_pb2.FieldRules | None = None,
) -> str | None:
    """Text, its length checked against the rules as the server counts it: Unicode
    code points, leading and trailing white space not counted."""
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
    if rules is not None:
        low, high = _lengths(rules)
        length = len(value.strip())
        if low is not None and length < low:
            problems.add(where, f"must be at least {low} characters, got {length}")
            return None
        if high is not None and length > high:
            problems.add(where, f"must be at most {high} characters, got {length}")
            return None
    return value


# --- the contract's bounds (None: not limited) ----------------------------------------


def _lengths(rules: validate_pb2.FieldRules) -> tuple[int | None, int | None]:
    return _bound(rules, "min_len"), _bound(rules, "max_len")


def _items(rules: validate_pb2.FieldRules) -> tuple[int | None, int | None]:
    return _bound(rules, "min_items"), _bound(rules, "max_items")


def _values(rules: validate_pb2.FieldRules) -> tuple[int | None, int | None]:
    return _bound(rules, "gte"), _bound(rules, "lte")


_Bound = Literal["min_len", "max_len", "min_items", "max_items", "gte", "lte"]


def _bound(rules: validate_pb2.FieldRules, name: _Bound) -> int | None:
    return int(getattr(rules, name)) if rules.HasField(name) else None


def _within(value: int, low: int | None, high: int | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _span(low: int | str | None, high: int | str | None) -> str:
    """The allowed range in words: 2-6, at least 2, at most 6, or any number of."""
    if low is not None and high is not None:
        return f"{low}-{high}"
    if low is not None:
        return f"at least {low}"
    return f"at most {high}" if high is not None else "any number of"


def _seconds(ms: int | None) -> str | None:
    return None if ms is None else f"{ms / 1000:g}"


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


def dump_quiz_file(
    title: str,
    questions: Sequence[quiz_pb2.QuestionSpec],
    instant_feedback: bool,
    allow_late_join: bool = False,
) -> str:
    """The quiz file (YAML) that loads back into exactly these questions: the right
    choice by its text (choices differ, as quiz files require), what was left unset
    left out."""
    document: dict[str, Any] = {"title": title}
    if instant_feedback:
        document["instant_feedback"] = True
    if allow_late_join:
        document["allow_late_join"] = True
    document["questions"] = [_question_document(q) for q in questions]
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100))


def _question_document(q: quiz_pb2.QuestionSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"text": q.text, "choices": list(q.choices)}
    right = q.choices[q.correct_choice] if 0 <= q.correct_choice < len(q.choices) else None
    if right is not None and list(q.choices).count(right) == 1:
        out["answer"] = right
    else:
        out["correct_choice"] = q.correct_choice
    if q.HasField("points"):
        out["points"] = q.points
    if q.HasField("time_limit_ms"):
        out["time_limit_ms"] = q.time_limit_ms
    return out
