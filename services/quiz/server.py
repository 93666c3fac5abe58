"""Wiring of the quiz service: SQL, Redis, NATS, tokens; `create_server` for tests."""

from __future__ import annotations

import grpc
from quizmesh.quiz.v1 import (
    account_pb2,
    account_pb2_grpc,
    library_pb2,
    library_pb2_grpc,
    quiz_pb2,
    quiz_pb2_grpc,
)

from services.database.engine import create_engine, health_check
from services.database.sync_lag import report_sync_lag
from services.identity.tokens import TokenIssuer, TokenVerifier
from services.live.quizzes import LiveQuizzes
from services.mesh import serve
from services.mesh.app import ServiceApp, build_server
from services.mesh.connections import Connections
from services.mesh.metrics import Metrics
from services.quiz.account_store import AccountStore
from services.quiz.accounts import AccountPolicy, AccountService
from services.quiz.announcer import Announcer
from services.quiz.attempts import Attempts, Limit
from services.quiz.config import Settings
from services.quiz.joining import Joining
from services.quiz.library import LibraryService
from services.quiz.library_store import LibraryStore
from services.quiz.lifecycle import Lifecycle, QuestionCache
from services.quiz.nickname_filter import NicknameFilter
from services.quiz.passwords import Passwords
from services.quiz.report_store import ReportSource
from services.quiz.reports import Reports
from services.quiz.service import QuizService
from services.quiz.store import QuizStore
from services.recovery.live_state import LiveStateRecovery

SERVICE_NAME = quiz_pb2.DESCRIPTOR.services_by_name["QuizService"].full_name
ACCOUNT_SERVICE_NAME = account_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name
LIBRARY_SERVICE_NAME = library_pb2.DESCRIPTOR.services_by_name["LibraryService"].full_name
QUARTER_HOUR = 15 * 60


def account_policy(settings: Settings) -> AccountPolicy:
    return AccountPolicy(
        sign_up=settings.sign_up,
        invite_codes=settings.invite_codes(),
        access_ttl_seconds=settings.host_access_ttl_seconds,
        refresh_ttl_seconds=settings.host_refresh_ttl_seconds,
        sign_ups=Limit("sign-up", "from this address", settings.sign_ups_per_address, 3600),
        failures_per_email=Limit(
            "failed sign-in", "for this email", settings.failed_sign_ins_per_email, QUARTER_HOUR
        ),
        failures_per_address=Limit(
            "failed sign-in",
            "from this address",
            settings.failed_sign_ins_per_address,
            QUARTER_HOUR,
        ),
    )


async def create_server(settings: Settings) -> ServiceApp:
    engine = create_engine(settings.database_url)
    metrics = Metrics("quiz")
    conn = await Connections.open(settings, "quiz")
    store = QuizStore(engine)
    live = LiveQuizzes(conn.redis, settings.key_prefix)
    announcer = Announcer(conn.nc, conn.js, conn.subjects)
    questions = QuestionCache(store)
    lifecycle = Lifecycle(store, live, announcer, questions)
    service = QuizService(
        store=store,
        live=live,
        joining=Joining(store, live),
        lifecycle=lifecycle,
        questions=questions,
        announcer=announcer,
        verifier=TokenVerifier.of(settings),
        issuer=TokenIssuer.of(settings),
        player_token_ttl=settings.player_token_ttl_seconds,
        reports=Reports(ReportSource(engine, conn.redis, settings.key_prefix)),
        nicknames=NicknameFilter.from_file(settings.nickname_blocklist_file),
    )

    accounts = AccountService(
        store=AccountStore(engine),
        passwords=Passwords(),
        attempts=Attempts(conn.redis, settings.key_prefix),
        issuer=TokenIssuer.of(settings),
        verifier=TokenVerifier.of(settings),
        policy=account_policy(settings),
    )

    library = LibraryService(LibraryStore(engine), service, TokenVerifier.of(settings))

    def register(server: grpc.aio.Server) -> None:
        quiz_pb2_grpc.add_QuizServiceServicer_to_server(service, server)
        account_pb2_grpc.add_AccountServiceServicer_to_server(accounts, server)
        library_pb2_grpc.add_LibraryServiceServicer_to_server(library, server)

    app = build_server(
        settings,
        register,
        [SERVICE_NAME, ACCOUNT_SERVICE_NAME, LIBRARY_SERVICE_NAME],
        {"database": health_check(engine), **conn.checks()},
        metrics,
    )
    recovery = LiveStateRecovery.of(store, live, conn, settings)
    unannounced = metrics.gauge(
        "quizmesh_unannounced_steps",
        "Host steps (start, advance, close) committed over 3 s ago whose announcement "
        "on NATS failed again at the last sweep",
    )
    app.background += [
        lambda: lifecycle.sweep_deadlines(settings.deadline_sweep_ms / 1000, unannounced),
        lambda: recovery.restore_lost(settings.restore_check_seconds),
        lambda: report_sync_lag(engine, conn.js, conn.subjects, metrics, every=5.0),
    ]
    app.after_stop += [conn.close, engine.dispose]
    return app


def main() -> None:
    serve.main("quiz", Settings, create_server)


if __name__ == "__main__":
    main()
