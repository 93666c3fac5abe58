"""How a fault test's quiz is played (QuizPlan) and the players who joined it."""

from __future__ import annotations

from dataclasses import dataclass

from quizmesh.quiz.v1 import quiz_pb2

CHOICES = ("north", "east", "south", "west")


@dataclass(frozen=True)
class QuizPlan:
    """How a test's quiz is played. Every player answers every question, at a steady
    rate over `answer_window_seconds`; a third of the answers are wrong, and every
    player gets at least one right (so the ranking never depends on join times)."""

    players: int = 200
    questions: int = 4
    answer_window_seconds: float = 3.0
    # Long enough that a fault never makes an answer late; 1000 points over 60 s
    # means one point per 120 ms, so many players tie on totals and the order of
    # reaching them decides.
    time_limit_ms: int = 60_000
    points: int = 1000
    # A client gives up on an answer (and the test fails) after retrying this long;
    # every fault here heals within a few seconds.
    give_up_after_seconds: float = 20.0
    # At most this many answers wait for their acknowledgement at once (a backlog
    # is sent as fast as the score service takes it, but not all at once).
    max_in_flight: int = 1000

    def __post_init__(self) -> None:
        assert self.questions >= 2, "with one question some players would never score"

    @property
    def answers(self) -> int:
        return self.players * self.questions

    def correct_choice(self, question: int) -> int:
        return question % len(CHOICES)

    def choice(self, player: int, question: int) -> int:
        right = self.correct_choice(question)
        return right if (player + question) % 3 else (right + 1) % len(CHOICES)

    def create_request(self, title: str) -> quiz_pb2.CreateQuizRequest:
        return quiz_pb2.CreateQuizRequest(
            title=title,
            questions=[
                quiz_pb2.QuestionSpec(
                    text=f"Which way is question {q}?",
                    choices=list(CHOICES),
                    correct_choice=self.correct_choice(q),
                    points=self.points,
                    time_limit_ms=self.time_limit_ms,
                )
                for q in range(self.questions)
            ],
            # The faults are about durability: every reply tells the total it counts.
            instant_feedback=True,
        )


@dataclass(frozen=True)
class Player:
    index: int
    player_id: str
    nickname: str
    token: str
