"""QuizService: quizzes, players and the lifecycle, for hosts and players."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from quizmesh.common.v1 import common_pb2, events_pb2
from quizmesh.quiz.v1 import quiz_pb2, quiz_pb2_grpc

from services import ids
from services.database.records import Question, QuizRecord, QuizState
from services.identity.tokens import Caller, Role, TokenIssuer, TokenVerifier
from services.live.quizzes import LiveQuizzes
from services.mesh.clock import now_ms, timestamp
from services.mesh.context import Context
from services.mesh.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Reason,
    Unauthenticated,
)
from services.mesh.paging import QuizCursor, decode_quiz_cursor, encode_quiz_cursor
from services.quiz import rules
from services.quiz.announcer import Announcer
from services.quiz.joining import Joining
from services.quiz.lifecycle import Lifecycle, QuestionCache, question_view
from services.quiz.nickname_filter import NicknameFilter
from services.quiz.reports import Reports
from services.quiz.store import DuplicateKey, QuizStore

STATES = {
    QuizState.OPEN: common_pb2.QUIZ_STATE_OPEN,
    QuizState.RUNNING: common_pb2.QUIZ_STATE_RUNNING,
    QuizState.CLOSED: common_pb2.QUIZ_STATE_CLOSED,
}


@dataclass
class QuizService(quiz_pb2_grpc.QuizServiceServicer):
    store: QuizStore
    live: LiveQuizzes
    joining: Joining
    lifecycle: Lifecycle
    questions: QuestionCache
    announcer: Announcer
    verifier: TokenVerifier
    issuer: TokenIssuer
    player_token_ttl: int
    reports: Reports
    nicknames: NicknameFilter = field(default_factory=NicknameFilter)

    async def CreateQuiz(
        self, request: quiz_pb2.CreateQuizRequest, context: Context
    ) -> quiz_pb2.CreateQuizResponse:
        host = self.verifier.caller(context).require_host()
        quiz = await self.create_game(
            host,
            request.title,
            request.questions,
            request.instant_feedback,
            allow_late_join=request.allow_late_join,
        )
        return quiz_pb2.CreateQuizResponse(quiz=quiz)

    async def create_game(
        self,
        host: Caller,
        title: str,
        specs: Sequence[quiz_pb2.QuestionSpec],
        instant_feedback: bool,
        library_quiz_id: str | None = None,
        allow_late_join: bool = False,
    ) -> quiz_pb2.Quiz:
        """A new OPEN quiz of `host` with these questions (CreateQuiz, and playing a
        library quiz), as its host sees it."""
        rules.check_questions(specs)
        qs = [
            Question(
                index=i,
                text=q.text.strip(),
                choices=[c.strip() for c in q.choices],
                correct_choice=q.correct_choice,
                points=rules.points_of(q),
                time_limit_ms=rules.time_limit_of(q),
            )
            for i, q in enumerate(specs)
        ]
        created = now_ms()
        for _ in range(5):  # a code collision is rare; draw again
            quiz_id = ids.new_quiz_id()
            try:
                await self.store.create(
                    quiz_id,
                    title.strip(),
                    host.subject,
                    created,
                    qs,
                    instant_feedback=instant_feedback,
                    library_quiz_id=library_quiz_id,
                    allow_late_join=allow_late_join,
                )
                break
            except DuplicateKey:
                continue
        else:
            raise FailedPrecondition(
                "could not allocate a quiz code; try again", Reason.ERROR_REASON_NO_QUIZ_CODE
            )
        quiz = await self.store.get(quiz_id)
        await self.live.publish(quiz, qs)
        return await self._render(quiz, host, player_count=0)

    async def GetQuiz(
        self, request: quiz_pb2.GetQuizRequest, context: Context
    ) -> quiz_pb2.GetQuizResponse:
        caller = self.verifier.optional_caller(context)
        quiz = await self.store.get(ids.quiz_code(request.quiz_id))
        return quiz_pb2.GetQuizResponse(quiz=await self._render(quiz, caller))

    async def ListQuizzes(
        self, request: quiz_pb2.ListQuizzesRequest, context: Context
    ) -> quiz_pb2.ListQuizzesResponse:
        caller = self.verifier.optional_caller(context)  # a token present must be valid
        # Anyone may list every game; a host may ask for their own (their history).
        host = None
        if request.mine:
            if caller is None:
                raise Unauthenticated(
                    "listing your own games needs your host token",
                    Reason.ERROR_REASON_TOKEN_MISSING,
                )
            host = caller.require_host().subject
        size = request.page_size or 20
        rows = await self.store.page(decode_quiz_cursor(request.page_token), size + 1, host)
        page = rows[:size]
        response = quiz_pb2.ListQuizzesResponse(
            quizzes=[await self._render(q, None, with_questions=False) for q in page]
        )
        if len(rows) > size:
            last = page[-1]
            response.next_page_token = encode_quiz_cursor(QuizCursor(last.created_ms, last.id))
        return response

    async def JoinQuiz(
        self, request: quiz_pb2.JoinQuizRequest, context: Context
    ) -> quiz_pb2.JoinQuizResponse:
        self.verifier.optional_caller(context)  # anyone may join; a token present must be valid
        quiz_id = ids.quiz_code(request.quiz_id)
        nickname = rules.nickname(request.nickname)
        if self.nicknames.refuses(nickname):
            raise InvalidArgument.field(
                "nickname",
                "is not allowed here (it contains a word this event refuses); choose another",
            )
        quiz = await self.store.get(quiz_id)
        try:
            player_id = await self.joining.join(quiz, nickname)
        except DuplicateKey as e:
            raise AlreadyExists(
                f"nickname {nickname!r} is already taken in quiz {quiz_id}; pick another",
                Reason.ERROR_REASON_NICKNAME_TAKEN,
            ) from e
        await self.announcer.board_changed(quiz_id)
        token = self.issuer.issue(Role.PLAYER, player_id, self.player_token_ttl, quiz_id=quiz_id)
        player = Caller(role=Role.PLAYER, subject=player_id, quiz_id=quiz_id)
        return quiz_pb2.JoinQuizResponse(
            player_id=player_id, player_token=token, quiz=await self._render(quiz, player)
        )

    async def StartQuiz(
        self, request: quiz_pb2.StartQuizRequest, context: Context
    ) -> quiz_pb2.StartQuizResponse:
        quiz, host = await self._hosted(request.quiz_id, context, "start")
        await self.lifecycle.start(quiz)
        return quiz_pb2.StartQuizResponse(quiz=await self._render_fresh(quiz.id, host))

    async def AdvanceQuestion(
        self, request: quiz_pb2.AdvanceQuestionRequest, context: Context
    ) -> quiz_pb2.AdvanceQuestionResponse:
        quiz, host = await self._hosted(request.quiz_id, context, "advance")
        await self.lifecycle.advance(quiz)
        return quiz_pb2.AdvanceQuestionResponse(quiz=await self._render_fresh(quiz.id, host))

    async def SetLobby(
        self, request: quiz_pb2.SetLobbyRequest, context: Context
    ) -> quiz_pb2.SetLobbyResponse:
        quiz, host = await self._hosted(request.quiz_id, context, "lock or unlock")
        if quiz.state is QuizState.CLOSED:
            raise FailedPrecondition(
                f"quiz {quiz.id} is over; nobody can join it anyway",
                Reason.ERROR_REASON_QUIZ_CLOSED,
            )
        await self.store.set_lobby(quiz.id, request.locked)
        return quiz_pb2.SetLobbyResponse(quiz=await self._render_fresh(quiz.id, host))

    async def GetQuizReport(
        self, request: quiz_pb2.GetQuizReportRequest, context: Context
    ) -> quiz_pb2.GetQuizReportResponse:
        quiz, host = await self._hosted(request.quiz_id, context, "see the report of")
        report = await self.reports.report(
            quiz, await self._render(quiz, host), await self.questions.get(quiz.id)
        )
        return quiz_pb2.GetQuizReportResponse(report=report)

    async def GetQuizReportCsv(
        self, request: quiz_pb2.GetQuizReportCsvRequest, context: Context
    ) -> quiz_pb2.GetQuizReportCsvResponse:
        quiz, host = await self._hosted(request.quiz_id, context, "see the report of")
        body = await self.reports.csv(
            quiz, await self._render(quiz, host), await self.questions.get(quiz.id)
        )
        return quiz_pb2.GetQuizReportCsvResponse(csv=body)

    async def CloseQuiz(
        self, request: quiz_pb2.CloseQuizRequest, context: Context
    ) -> quiz_pb2.CloseQuizResponse:
        quiz, host = await self._hosted(request.quiz_id, context, "close")
        await self.lifecycle.close(quiz, events_pb2.CLOSE_REASON_HOST)
        return quiz_pb2.CloseQuizResponse(quiz=await self._render_fresh(quiz.id, host))

    async def _hosted(
        self, raw_quiz_id: str, context: Context, action: str
    ) -> tuple[QuizRecord, Caller]:
        """The quiz, if the caller is its host (identity from the token only)."""
        caller = self.verifier.caller(context)
        quiz = await self.store.get(ids.quiz_code(raw_quiz_id))
        if caller.role is not Role.HOST or caller.subject != quiz.host:
            raise PermissionDenied(
                f"only the host of quiz {quiz.id} may {action} it", Reason.ERROR_REASON_NOT_THE_HOST
            )
        return quiz, caller

    async def _render_fresh(self, quiz_id: str, caller: Caller) -> quiz_pb2.Quiz:
        return await self._render(await self.store.get(quiz_id), caller)

    async def _render(
        self,
        quiz: QuizRecord,
        caller: Caller | None,
        player_count: int | None = None,
        with_questions: bool = True,
    ) -> quiz_pb2.Quiz:
        now = now_ms()
        if player_count is None:
            player_count = await self.live.player_count(quiz.id)
        if player_count is None:  # the live state is gone (closed and expired)
            player_count = await self.store.player_count(quiz.id)
        view = quiz_pb2.Quiz(
            quiz_id=quiz.id,
            title=quiz.title,
            host=quiz.host,
            state=STATES[quiz.state],
            question_count=quiz.question_count,
            current_question=quiz.current_question,
            player_count=player_count,
            create_time=timestamp(quiz.created_ms),
            server_time=timestamp(now),
            instant_feedback=quiz.instant_feedback,
            library_quiz_id=quiz.library_quiz_id or "",
            allow_late_join=quiz.allow_late_join,
            lobby_locked=quiz.lobby_locked,
        )
        if with_questions:
            is_host = (
                caller is not None and caller.role is Role.HOST and caller.subject == quiz.host
            )
            for q in await self.questions.get(quiz.id):
                if not is_host and q.index > quiz.current_question:
                    break  # players never see questions before they open
                current = q.index == quiz.current_question
                view.questions.append(
                    question_view(
                        q,
                        opened=quiz.question_opened_ms if current else None,
                        deadline=quiz.question_deadline_ms if current else None,
                        reveal=is_host or quiz.question_closed(q.index, now),
                    )
                )
        return view
