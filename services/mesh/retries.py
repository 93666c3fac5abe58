"""Which RPCs a client or the gateway may send again, and gRPC's own retry policy for
them (a service config), so that no client writes a retry loop by hand.

A call is retried only when sending it twice has the effect of sending it once:
reads, the watch streams (they resume from the request's sequence), and
SubmitAnswer (one answer per player and question: the same answer again gets the
first one's result, see docs/spec.md#one-answer-per-question). Creating, joining
and the host's lifecycle calls are never retried: a second JoinQuiz is a second
player, a second AdvanceQuestion skips a question.

Only UNAVAILABLE and CANCELLED are retried: what a stopping or restoring replica, a
lost connection and "scored but not yet stored durably" answer with, and what a
server that stops before taking a call answers it with.
"""

from __future__ import annotations

import json
from typing import Any

from quizmesh.leaderboard.v1 import leaderboard_pb2
from quizmesh.quiz.v1 import account_pb2, library_pb2, quiz_pb2
from quizmesh.score.v1 import score_pb2
from quizmesh.stream.v1 import stream_pb2

QUIZ = quiz_pb2.DESCRIPTOR.services_by_name["QuizService"].full_name
ACCOUNT = account_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name
LIBRARY = library_pb2.DESCRIPTOR.services_by_name["LibraryService"].full_name
SCORE = score_pb2.DESCRIPTOR.services_by_name["ScoreService"].full_name
LEADERBOARD = leaderboard_pb2.DESCRIPTOR.services_by_name["LeaderboardService"].full_name
STREAM = stream_pb2.DESCRIPTOR.services_by_name["StreamService"].full_name

# Every RPC of the contract, by service: retried or not (a test keeps this complete).
RETRIED: dict[str, frozenset[str]] = {
    # SetLobby sets the lock to what it says: twice is once.
    QUIZ: frozenset({"GetQuiz", "ListQuizzes", "SetLobby", "GetQuizReport", "GetQuizReportCsv"}),
    LIBRARY: frozenset({"GetLibraryQuiz", "ListLibraryQuizzes"}),
    SCORE: frozenset({"SubmitAnswer", "GetPlayerScore"}),
    LEADERBOARD: frozenset({"GetLeaderboard", "GetPlayerRank"}),
    STREAM: frozenset({"WatchLeaderboard", "WatchQuiz", "WatchLeaderboardSse", "WatchQuizSse"}),
}
NOT_RETRIED: dict[str, frozenset[str]] = {
    QUIZ: frozenset({"CreateQuiz", "JoinQuiz", "StartQuiz", "AdvanceQuestion", "CloseQuiz"}),
    # A refresh token works once: a retried RefreshSession would end its session.
    ACCOUNT: frozenset({"SignUp", "SignIn", "RefreshSession", "SignOut"}),
    # A second create, duplicate or play is a second quiz; an update sent again
    # after it landed is refused by its expected_version (or saves the same twice).
    LIBRARY: frozenset(
        {
            "CreateLibraryQuiz",
            "UpdateLibraryQuiz",
            "DuplicateLibraryQuiz",
            "DeleteLibraryQuiz",
            "PlayLibraryQuiz",
        }
    ),
}

# Up to 4 attempts, 0.1 s to 1 s apart (with gRPC's jitter): a replica restarting
# or a live state being restored is usually back within that second and a half.
MAX_ATTEMPTS = 4
INITIAL_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 1.0
BACKOFF_MULTIPLIER = 2


def retried_methods() -> list[str]:
    """The retried RPCs' full names, "package.Service.Method"."""
    return sorted(
        f"{service}.{method}" for service, methods in RETRIED.items() for method in methods
    )


def service_config() -> dict[str, Any]:
    """gRPC's service config (gRFC A6) with the retry policy of the retried RPCs."""
    return {
        "methodConfig": [
            {
                "name": [
                    {"service": service, "method": method}
                    for service, methods in sorted(RETRIED.items())
                    for method in sorted(methods)
                ],
                "retryPolicy": {
                    "maxAttempts": MAX_ATTEMPTS,
                    "initialBackoff": f"{INITIAL_BACKOFF_SECONDS}s",
                    "maxBackoff": f"{MAX_BACKOFF_SECONDS}s",
                    "backoffMultiplier": BACKOFF_MULTIPLIER,
                    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
                },
            }
        ]
    }


def channel_options() -> list[tuple[str, Any]]:
    """Options for a client channel to the gateway or a service that retries the
    retried RPCs on UNAVAILABLE or CANCELLED (and nothing else)."""
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(service_config())),
    ]
