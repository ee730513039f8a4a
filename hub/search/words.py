"""Folding and words: the text rules shared by string matching and full-text search (FHIR R4
search.html#string, #content, #text).

Pure and without imports from the rest of ``hub.search``, so both the extraction
(``hub.search.extract``) and the query parser (``hub.search.query``) split text the same way.

A *word* is a run of letters and digits of the folded text (case and accents removed, as
``fold`` does for string matching); words of one character are dropped. The caps below bound
what one resource can put into the index, whatever its size:

* ``MAX_WORDS`` distinct words per resource and parameter (the first ones found are kept);
* ``MAX_WORD_CHARS`` characters per word (longer words are cut, on both the index and the query
  side, so a prefix search still finds them);
* ``MAX_TEXT_CHARS`` characters read from one text (an element, the narrative, a report);
* ``MAX_QUERY_WORDS`` words in one search value (more is an invalid search).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = [
    "MAX_QUERY_WORDS",
    "MAX_TEXT_CHARS",
    "MAX_WORDS",
    "MAX_WORD_CHARS",
    "distinct_words",
    "fold",
]

MAX_WORDS = 200
MAX_WORD_CHARS = 64
MAX_TEXT_CHARS = 65_536
MAX_QUERY_WORDS = 16

_WORD = re.compile(r"[^\W_]+")  # letters and digits, in every script


def fold(text: str) -> str:
    """Case- and accent-insensitive form for string matching (search.html#string): NFKD,
    combining marks dropped, casefolded (plain ASCII: lower-cased, the same result)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def distinct_words(texts: Iterable[str], limit: int = MAX_WORDS) -> list[str]:
    """The distinct folded words of ``texts``, in the order first found, at most ``limit``.
    ``texts`` is read lazily: no text after the one with the ``limit``-th word is looked at."""
    found: dict[str, None] = {}
    for text in texts:
        for word in _WORD.findall(fold(text[:MAX_TEXT_CHARS])):
            if len(word) > 1:
                found[word[:MAX_WORD_CHARS]] = None
                if len(found) >= limit:
                    return list(found)
    return list(found)
