"""LibraryService: a host's quizzes, kept apart from the games played from them.

A library quiz's content is stored as the host wrote it (QuestionSpec JSON, unset
fields unset); playing it copies that content into a new game through the same
path as CreateQuiz, so every game is made, checked and shown one way."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from quizmesh.quiz.v1 import library_pb2, library_pb2_grpc, quiz_pb2

from services.identity.tokens import Caller, TokenVerifier
from services.mesh.clock import now_ms, timestamp
from services.mesh.context import Context
from services.mesh.errors import PermissionDenied, Reason
from services.mesh.paging import QuizCursor, decode_quiz_cursor, encode_quiz_cursor
from services.quiz import rules
from services.quiz.library_store import LibraryRecord, LibraryStore
from services.quiz.service import QuizService

MAX_TITLE = 200


def content_of(
    questions: Sequence[quiz_pb2.QuestionSpec], instant_feedback: bool, allow_late_join: bool
) -> dict[str, Any]:
    return {
        "questions": [
            json_format.MessageToDict(q, preserving_proto_field_name=True) for q in questions
        ],
        "instant_feedback": instant_feedback,
        "allow_late_join": allow_late_join,
    }


def late_join(record: LibraryRecord) -> bool:
    # Content saved before late joining existed has no such key: not allowed.
    return bool(record.content.get("allow_late_join", False))


def questions_of(record: LibraryRecord) -> list[quiz_pb2.QuestionSpec]:
    return [json_format.ParseDict(q, quiz_pb2.QuestionSpec()) for q in record.content["questions"]]


@dataclass
class LibraryService(library_pb2_grpc.LibraryServiceServicer):
    store: LibraryStore
    quizzes: QuizService
    verifier: TokenVerifier

    async def CreateLibraryQuiz(
        self, request: library_pb2.CreateLibraryQuizRequest, context: Context
    ) -> library_pb2.CreateLibraryQuizResponse:
        host = self.verifier.caller(context).require_host()
        rules.check_questions(request.questions)
        now = now_ms()
        record = LibraryRecord(
            id=secrets.token_hex(8),
            host=host.subject,
            title=request.title.strip(),
            content=content_of(
                request.questions, request.instant_feedback, request.allow_late_join
            ),
            version=1,
            created_ms=now,
            updated_ms=now,
        )
        await self.store.add(record)
        return library_pb2.CreateLibraryQuizResponse(library_quiz=self._view(record, 0))

    async def GetLibraryQuiz(
        self, request: library_pb2.GetLibraryQuizRequest, context: Context
    ) -> library_pb2.GetLibraryQuizResponse:
        record = await self._owned(request.library_quiz_id, context)
        return library_pb2.GetLibraryQuizResponse(library_quiz=await self._played_view(record))

    async def ListLibraryQuizzes(
        self, request: library_pb2.ListLibraryQuizzesRequest, context: Context
    ) -> library_pb2.ListLibraryQuizzesResponse:
        host = self.verifier.caller(context).require_host()
        size = request.page_size or 20
        rows = await self.store.page(host.subject, decode_quiz_cursor(request.page_token), size + 1)
        page = rows[:size]
        played = await self.store.games_played([r.id for r in page])
        response = library_pb2.ListLibraryQuizzesResponse(
            library_quizzes=[self._view(r, played.get(r.id, 0), with_questions=False) for r in page]
        )
        if len(rows) > size:
            last = page[-1]
            response.next_page_token = encode_quiz_cursor(QuizCursor(last.updated_ms, last.id))
        return response

    async def UpdateLibraryQuiz(
        self, request: library_pb2.UpdateLibraryQuizRequest, context: Context
    ) -> library_pb2.UpdateLibraryQuizResponse:
        record = await self._owned(request.library_quiz_id, context)
        rules.check_questions(request.questions)
        await self.store.replace(
            record.id,
            request.title.strip(),
            content_of(request.questions, request.instant_feedback, request.allow_late_join),
            now_ms(),
            request.expected_version if request.HasField("expected_version") else None,
        )
        saved = await self.store.get(record.id)
        return library_pb2.UpdateLibraryQuizResponse(library_quiz=await self._played_view(saved))

    async def DuplicateLibraryQuiz(
        self, request: library_pb2.DuplicateLibraryQuizRequest, context: Context
    ) -> library_pb2.DuplicateLibraryQuizResponse:
        original = await self._owned(request.library_quiz_id, context)
        now = now_ms()
        copy = LibraryRecord(
            id=secrets.token_hex(8),
            host=original.host,
            title=request.title.strip() or f"Copy of {original.title}"[:MAX_TITLE],
            content=original.content,
            version=1,
            created_ms=now,
            updated_ms=now,
        )
        await self.store.add(copy)
        return library_pb2.DuplicateLibraryQuizResponse(library_quiz=self._view(copy, 0))

    async def DeleteLibraryQuiz(
        self, request: library_pb2.DeleteLibraryQuizRequest, context: Context
    ) -> library_pb2.DeleteLibraryQuizResponse:
        record = await self._owned(request.library_quiz_id, context)
        await self.store.delete(record.id)
        return library_pb2.DeleteLibraryQuizResponse()

    async def PlayLibraryQuiz(
        self, request: library_pb2.PlayLibraryQuizRequest, context: Context
    ) -> library_pb2.PlayLibraryQuizResponse:
        host = self.verifier.caller(context).require_host()
        record = await self._owned(request.library_quiz_id, context, host)
        game = await self.quizzes.create_game(
            host,
            record.title,
            questions_of(record),
            bool(record.content["instant_feedback"]),
            library_quiz_id=record.id,
            allow_late_join=late_join(record),
        )
        return library_pb2.PlayLibraryQuizResponse(quiz=game)

    async def _owned(
        self, library_quiz_id: str, context: Context, host: Caller | None = None
    ) -> LibraryRecord:
        """The caller's own library quiz: a host token first, then the quiz, then
        its owner (ids are random: 64 bits, not to be guessed)."""
        if host is None:
            host = self.verifier.caller(context).require_host()
        record = await self.store.get(library_quiz_id)
        if record.host != host.subject:
            raise PermissionDenied(
                f"quiz {library_quiz_id} is in another host's library",
                Reason.ERROR_REASON_NOT_THE_HOST,
            )
        return record

    async def _played_view(self, record: LibraryRecord) -> library_pb2.LibraryQuiz:
        """The quiz with how many games were made from it."""
        played = await self.store.games_played([record.id])
        return self._view(record, played.get(record.id, 0))

    def _view(
        self, record: LibraryRecord, games_played: int, with_questions: bool = True
    ) -> library_pb2.LibraryQuiz:
        questions = questions_of(record)
        return library_pb2.LibraryQuiz(
            library_quiz_id=record.id,
            title=record.title,
            questions=questions if with_questions else [],
            instant_feedback=bool(record.content["instant_feedback"]),
            allow_late_join=late_join(record),
            host=record.host,
            version=record.version,
            create_time=timestamp(record.created_ms),
            update_time=timestamp(record.updated_ms),
            question_count=len(questions),
            games_played=games_played,
        )
