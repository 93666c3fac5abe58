"""A game's report: every player's answers best first, every question's outcome
hardest first, as JSON (GetQuizReport) or CSV (GetQuizReportCsv)."""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass

from google.api import httpbody_pb2
from quizmesh.quiz.v1 import quiz_pb2

from services.database.records import Question, QuizRecord
from services.live.layout import Answer
from services.mesh.errors import Reason, Unavailable
from services.quiz.report_store import GameRecord, ReportSource

CSV_COLUMNS = (
    "rank",
    "nickname",
    "player_id",
    "score",
    "question",
    "question_text",
    "choice",
    "choice_text",
    "correct",
    "points",
    "time_taken_s",
)
# A spreadsheet runs a cell that starts with one of these as a formula: a nickname
# such as "=HYPERLINK(...)" must stay text (OWASP's CSV injection advice).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Reports:
    source: ReportSource

    async def record(self, quiz: QuizRecord) -> GameRecord:
        live = await self.source.live(quiz.id)
        if live is not None:
            return live
        if not quiz.board_final:
            # Lost from Redis and not yet final in SQL: being rebuilt (or synced).
            raise Unavailable(
                f"quiz {quiz.id}'s results are being restored; retry in a few seconds",
                Reason.ERROR_REASON_LIVE_STATE_RESTORING,
            )
        return await self.source.final(quiz.id)

    async def report(
        self, quiz: QuizRecord, view: quiz_pb2.Quiz, questions: list[Question]
    ) -> quiz_pb2.QuizReport:
        game = await self.record(quiz)
        report = quiz_pb2.QuizReport(quiz=view, is_final=quiz.board_final)
        for rank, (player_id, score) in enumerate(game.standings, start=1):
            player = report.players.add(
                player_id=player_id,
                nickname=game.nicknames.get(player_id, ""),
                rank=rank,
                score=score,
            )
            for q in questions:
                answer = game.answers.get((q.index, player_id))
                if answer is None:
                    continue
                entry = player.answers.add(
                    question_index=q.index,
                    choice_index=answer.choice_index,
                    correct=answer.correct,
                    points=answer.points_awarded,
                )
                taken = _taken(game, q.index, answer.answered_ms)
                if taken is not None:
                    entry.time_taken_ms = taken
        # Each question's answers, gathered in one pass over the game's.
        by_question: dict[int, list[Answer]] = {}
        for (index, _), answer in game.answers.items():
            by_question.setdefault(index, []).append(answer)
        outcomes = [
            _outcome(game, q, by_question.get(q.index, []))
            for q in questions
            if q.index <= quiz.current_question
        ]
        report.questions.extend(sorted(outcomes, key=_hardness))
        return report

    async def csv(
        self, quiz: QuizRecord, view: quiz_pb2.Quiz, questions: list[Question]
    ) -> httpbody_pb2.HttpBody:
        report = await self.report(quiz, view, questions)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        opened = [q for q in questions if q.index <= quiz.current_question]
        for player in report.players:
            given = {a.question_index: a for a in player.answers}
            for q in opened:
                a = given.get(q.index)
                writer.writerow(
                    [
                        player.rank,
                        _cell(player.nickname),
                        player.player_id,
                        player.score,
                        q.index + 1,
                        _cell(q.text),
                        "" if a is None else a.choice_index + 1,
                        "" if a is None else _cell(q.choices[a.choice_index]),
                        "" if a is None else ("yes" if a.correct else "no"),
                        "" if a is None else a.points,
                        ""
                        if a is None or not a.HasField("time_taken_ms")
                        else f"{a.time_taken_ms / 1000:.3f}",
                    ]
                )
        return httpbody_pb2.HttpBody(
            content_type="text/csv; charset=utf-8", data=out.getvalue().encode()
        )


def _taken(game: GameRecord, question: int, answered_ms: int) -> int | None:
    opened = game.opened.get(question)
    return None if opened is None else max(0, answered_ms - opened)


def _outcome(game: GameRecord, q: Question, given: list[Answer]) -> quiz_pb2.QuestionReport:
    counts = [0] * len(q.choices)
    for a in given:
        if 0 <= a.choice_index < len(counts):
            counts[a.choice_index] += 1
    outcome = quiz_pb2.QuestionReport(
        index=q.index,
        text=q.text,
        choices=q.choices,
        correct_choice=q.correct_choice,
        choice_counts=counts,
        answered=len(given),
        answered_right=sum(1 for a in given if a.correct),
    )
    times = [t for a in given if (t := _taken(game, q.index, a.answered_ms)) is not None]
    if times:
        outcome.median_time_ms = int(statistics.median(times))
    return outcome


def _hardness(q: quiz_pb2.QuestionReport) -> tuple[float, int, int]:
    right = q.answered_right / q.answered if q.answered else 1.0
    return (right, -q.median_time_ms, q.index)


def _cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text
