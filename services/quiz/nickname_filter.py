"""The operator's list of words no nickname may carry (QUIZMESH_NICKNAME_BLOCKLIST_FILE).

One entry a line; `#` starts a comment. A plain entry matches a whole word of the
nickname, `*entry*` matches anywhere in it (for words that hide inside others).
Both sides are compared folded: case, accents and width ignored, the usual digit
and symbol stand-ins read as letters ("1d10t" is "idiot"), and a word spelled out
with separators ("i.d.i.o.t", "i d i o t") joined up. Whole words by default, so
that "Scunthorpe" or "Dickens" stay allowed unless the operator says otherwise.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_WORD = re.compile(r"[^\W\d_]+")
# Single letters with separators between them: "i.d.i.o.t", "i d i o t".
_SPELLED = re.compile(r"\b(?:[^\W\d_][\s._\-*]+){2,}[^\W\d_]\b")


def fold(text: str) -> str:
    """Lower case, accents and width gone, stand-ins read as letters."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(LEET))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class NicknameFilter:
    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._words: set[str] = set()
        self._anywhere: list[str] = []
        for raw in entries:
            entry = raw.split("#", 1)[0].strip()
            if len(entry) > 2 and entry.startswith("*") and entry.endswith("*"):
                self._anywhere.append(fold(entry[1:-1]))
            elif entry:
                self._words.add(fold(entry))

    @classmethod
    def from_file(cls, path: Path | None) -> NicknameFilter:
        if path is None:
            return cls()
        return cls(path.read_text(encoding="utf-8").splitlines())

    def refuses(self, nickname: str) -> bool:
        if not (self._words or self._anywhere):
            return False
        folded = fold(nickname)
        joined = _SPELLED.sub(lambda m: re.sub(r"[\s._\-*]+", "", m.group(0)), folded)
        if any(word in self._words for word in _WORD.findall(joined)):
            return True
        squashed = "".join(_WORD.findall(folded))
        return any(part in squashed for part in self._anywhere)
