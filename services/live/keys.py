"""The Redis keys of one quiz's live state.

All keys of a quiz share the hash tag `{quiz_id}`, so a script touching several of
them runs on one Redis Cluster shard while different quizzes spread out. What each
key holds, field by field, is in `services/live/layout.py`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QuizKeys:
    """Every Redis key of one quiz."""

    prefix: str
    quiz_id: str

    def _key(self, name: str) -> str:
        return f"{self.prefix}quiz:{{{self.quiz_id}}}:{name}"

    @property
    def board(self) -> str:
        """Sorted set: player id -> packed score (layout.pack)."""
        return self._key("board")

    @property
    def nicknames(self) -> str:
        """Hash: player id -> nickname."""
        return self._key("nicknames")

    @property
    def state(self) -> str:
        """Hash: the fields of layout.Field; written last by a rebuild, so without
        it nothing else of the quiz is trusted."""
        return self._key("state")

    @property
    def questions(self) -> str:
        """Hash: question index -> layout.QuestionSpec record."""
        return self._key("questions")

    @property
    def answers(self) -> str:
        """Hash: layout.answer_field(question, player) -> layout.Answer record."""
        return self._key("answers")

    @property
    def pending(self) -> str:
        """Sorted set: player id -> packed score they reach once the open question's
        results are revealed (quizzes without instant feedback)."""
        return self._key("pending")

    @property
    def changed(self) -> str:
        """Set: players whose board entry changed since the last board update
        (scripts/take_update.lua), for the stream processes' copies of the board."""
        return self._key("changed")

    @property
    def recovering(self) -> str:
        """String: held while one process rebuilds this quiz's live state."""
        return self._key("recovering")

    def all(self) -> list[str]:
        """The keys of the live state (not the recovery lock)."""
        return [
            self.board,
            self.pending,
            self.changed,
            self.nicknames,
            self.state,
            self.questions,
            self.answers,
        ]
