"""What quizctl prints: readable summaries and tables, or the response as JSON."""

from __future__ import annotations

import datetime
import string
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from quizmesh.common.v1 import common_pb2
from quizmesh.leaderboard.v1 import leaderboard_pb2
from quizmesh.quiz.v1 import library_pb2, quiz_pb2


def to_json(message: Message) -> str:
    """The message as the HTTP/JSON API would show it, but with proto field names.

    Fields at their default are printed too: ``current_question: 0`` (the first
    question) must not vanish from a script's view.
    """
    return json_format.MessageToJson(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        indent=2,
    )


def state_name(state: common_pb2.QuizState.ValueType) -> str:
    name = common_pb2.QuizState.Name(state)
    return name.removeprefix("QUIZ_STATE_")


def quiz_summary(quiz: quiz_pb2.Quiz, *, all_questions: bool = False) -> str:
    """A few labelled lines about the quiz, then its current (or every visible) question."""
    lines = [
        f"quiz      {quiz.quiz_id}  {quiz.title}",
        f"state     {state_name(quiz.state)}",
        f"host      {quiz.host or '-'}",
        f"players   {quiz.player_count}{_joining(quiz)}",
        f"question  {_progress(quiz)}",
    ]
    if quiz.HasField("create_time"):
        created = quiz.create_time.ToDatetime(tzinfo=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"created   {created}")
    if all_questions:
        shown = list(quiz.questions)
    else:
        shown = [q for q in quiz.questions if q.index == quiz.current_question]
        if quiz.state != common_pb2.QUIZ_STATE_RUNNING:
            shown = []
    for question in shown:
        current = question.index == quiz.current_question
        lines.append("")
        lines.extend(_question_lines(question, current=current and all_questions))
    return "\n".join(lines)


def _joining(quiz: quiz_pb2.Quiz) -> str:
    if quiz.state == common_pb2.QUIZ_STATE_CLOSED:
        return ""
    if quiz.lobby_locked:
        return "  (lobby locked)"
    if quiz.allow_late_join:
        return "  (late joiners welcome)"
    return ""


def _progress(quiz: quiz_pb2.Quiz) -> str:
    total = quiz.question_count
    if quiz.state == common_pb2.QUIZ_STATE_CLOSED:
        return f"finished ({total} questions)"
    if quiz.current_question < 0:
        return f"not started ({total} questions)"
    progress = f"{quiz.current_question + 1} of {total}"
    current = next((q for q in quiz.questions if q.index == quiz.current_question), None)
    if current is None or not current.HasField("deadline") or not quiz.HasField("server_time"):
        return progress
    # Both instants come from the server clock, so their difference is exact here.
    left = (current.deadline.ToNanoseconds() - quiz.server_time.ToNanoseconds()) / 1e9
    if left > 0:
        return f"{progress}, answers close in {left:.1f} s"
    return f"{progress}, answers closed"


def _question_lines(question: common_pb2.QuestionView, *, current: bool) -> list[str]:
    marker = ">" if current else " "
    limit = question.time_limit_ms / 1000
    lines = [
        f"{marker} {question.index + 1}. {question.text}  ({question.points} points, {limit:g} s)"
    ]
    has_correct = question.HasField("correct_choice")
    for i, choice in enumerate(question.choices):
        letter = string.ascii_uppercase[i] if i < len(string.ascii_uppercase) else str(i)
        right = "  (correct)" if has_correct and i == question.correct_choice else ""
        lines.append(f"     {letter}  {choice}{right}")
    return lines


def quiz_table(quizzes: Sequence[quiz_pb2.Quiz]) -> str:
    if not quizzes:
        return "no quizzes"
    rows = [
        [
            quiz.quiz_id,
            state_name(quiz.state),
            str(quiz.player_count),
            _position(quiz),
            quiz.title,
        ]
        for quiz in quizzes
    ]
    return table(["QUIZ", "STATE", "PLAYERS", "QUESTION", "TITLE"], rows, right={2, 3})


def _position(quiz: quiz_pb2.Quiz) -> str:
    if quiz.current_question < 0:
        return f"-/{quiz.question_count}"
    return f"{quiz.current_question + 1}/{quiz.question_count}"


def leaderboard_table(page: leaderboard_pb2.GetLeaderboardResponse) -> str:
    rows = [[str(e.rank), e.nickname, str(e.score)] for e in page.entries]
    status = "final" if page.is_final else "live"
    footer = f"{len(page.entries)} of {page.total_players} players, {status}"
    if not rows:
        return f"no players yet ({status})" if page.total_players == 0 else footer
    return table(["RANK", "NICKNAME", "SCORE"], rows, right={0, 2}) + "\n" + footer


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """Plain aligned columns; ``right`` holds the indexes of numeric columns."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def _when(ts: Any) -> str:
    return str(ts.ToDatetime(tzinfo=datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"))


def library_line(quiz: library_pb2.LibraryQuiz) -> str:
    """One line of `quizctl library list`."""
    return (
        f"{quiz.library_quiz_id}  v{quiz.version}  {quiz.question_count:>3} questions  "
        f"played {quiz.games_played:>3}x  {_when(quiz.update_time)}  {quiz.title}"
    )


def library_quiz(quiz: library_pb2.LibraryQuiz) -> str:
    """`quizctl library show`: the quiz, then each question with its right choice."""
    lines = [
        f"library quiz  {quiz.library_quiz_id}  {quiz.title}",
        f"version       {quiz.version} (changed {_when(quiz.update_time)})",
        f"played        {quiz.games_played} games",
    ]
    if quiz.instant_feedback:
        lines.append("feedback      at once (practice)")
    for i, q in enumerate(quiz.questions):
        lines += ["", f"  {i + 1}. {q.text}"]
        lines += [
            f"     {'*' if c == q.correct_choice else ' '} {choice}"
            for c, choice in enumerate(q.choices)
        ]
    return "\n".join(lines)


def report(report: quiz_pb2.QuizReport) -> str:
    """`quizctl report`: the questions hardest first, then every player."""
    quiz = report.quiz
    final = "final" if report.is_final else "so far"
    lines = [f"report    {quiz.quiz_id}  {quiz.title}  ({final})", "", "questions, hardest first:"]
    for q in report.questions:
        share = f"{q.answered_right}/{q.answered} right" if q.answered else "no answers"
        median = f", median {q.median_time_ms / 1000:.1f} s" if q.HasField("median_time_ms") else ""
        counts = " ".join(
            f"{'*' if i == q.correct_choice else ''}{choice}: {n}"
            for i, (choice, n) in enumerate(zip(q.choices, q.choice_counts, strict=False))
        )
        lines.append(f"  {q.index + 1:>3}. {q.text}  [{share}{median}]  {counts}")
    lines += ["", "players:"]
    for p in report.players:
        right = sum(1 for a in p.answers if a.correct)
        lines.append(
            f"  {p.rank:>5}  {p.score:>7}  {right}/{len(report.questions)} right  {p.nickname}"
        )
    return "\n".join(lines)
