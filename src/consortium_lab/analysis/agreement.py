"""How much the members of a run agree, measured on their answer texts.

Everything here is a pure function of its arguments: no I/O, no models, no randomness. The chat
widget renders what these functions return; they never produce HTML themselves. Offsets are
Python string indices (Unicode code points) into the *original* text passed in, so a front end
can wrap ``text[span.start:span.end]`` without re-tokenising. (JavaScript strings index UTF-16
code units: a front end must convert offsets for text outside the Basic Multilingual Plane,
e.g. emoji.)

Definitions
-----------

Tokens
    A *token* is a maximal run of word characters, where apostrophes (``'`` or ``’``) between
    two word characters are kept inside the token: ``don't`` and ``model’s`` are one token each,
    while the quotes of ``'quoted'`` and the trailing apostrophe of ``members'`` are not part of
    any token. Word characters are those Python's ``\\w`` matches (Unicode letters, digits and
    the underscore) plus combining marks (Unicode categories Mn, Mc and Me), so that
    decomposed accents and scripts such as Devanagari stay inside their word. Everything else
    (spaces, punctuation, symbols, emoji) separates tokens: ``state-of-the-art`` is four tokens
    and ``3.14`` is the two tokens ``3`` and ``14``. Numbers are kept as tokens.

Normalised form
    A token's normalised form is its text under Unicode NFKC normalisation, then case-folded
    (``str.casefold``, a stronger lower-casing: ``Straße`` and ``STRASSE`` are both
    ``strasse``), with ``’`` replaced by ``'``. Tokens are compared by their normalised forms.

Stop words
    :data:`STOP_WORDS`, a small English list (articles, pronouns, auxiliaries, common
    prepositions and conjunctions and their contractions). Stop words are removed for
    :func:`word_frequencies` and for the content words of :func:`highlight_refinement_areas`
    only; the agreement measures keep every token, so that whole phrases match.

Shingles (units)
    The *shingles* of a text are the set of its word 3-grams: the tuples of three consecutive
    normalised tokens. A text with only one or two tokens has a single shingle, the tuple of
    all its tokens (so two short texts match exactly when their normalised token sequences are
    equal, and a short text never matches any 3-gram of a longer one). A text without tokens
    has no shingles and is called *empty*. Shingles are a set: repeating a phrase does not
    weigh it more. See :func:`shingles`.

Agreement highlighting (:func:`highlight_agreement`)
    For each member text, each token is *shared* when at least one shingle containing that
    token also occurs in the text of at least one OTHER member, and *unique* otherwise (no
    shingle containing it occurs in any other member's text; a phrase repeated within the same
    text does not make it shared). A shared token's ``shared_with`` lists every other member
    (in the order of the mapping) whose text contains at least one of the shingles containing
    the token. Consecutive tokens of the same kind and the same ``shared_with`` are merged into
    one span from the start of the first to the end of the last, covering the spaces and
    punctuation between them; text before the first token and after the last token of the text
    is not covered by any span. Spans of a text are sorted, never overlap, and have a gap
    between them only where there is no token. Texts with one or two tokens follow from the
    shingle definition: all their tokens form one span, shared (with each member whose
    normalised token sequence is the same) or unique. An empty text gets no spans. A mapping
    with a single member marks every token unique.

Pairwise agreement (:func:`pairwise_agreement`)
    For two non-empty texts A and B, the Jaccard similarity of their shingle sets:
    ``|S(A) ∩ S(B)| / |S(A) ∪ S(B)|``, in [0, 1]; 1.0 for texts with the same shingles
    (identical texts, or texts differing only in case, punctuation and spacing), 0.0 for texts
    sharing no 3-word phrase. Empty texts take no part.

Consensus (:func:`consensus`)
    The arithmetic mean of the pairwise agreement over all unordered pairs of non-empty
    member texts. ``None`` (undefined, not zero) when fewer than two member texts are
    non-empty.

Refinement areas (:func:`highlight_refinement_areas`)
    The *content words* of an area are the normalised forms of its tokens that are not stop
    words and have at least three characters. Every token of the synthesis whose normalised
    form equals a content word of some area is covered by one span of kind ``"refinement"``
    (one span per token occurrence, never merged, never overlapping) whose ``area`` is the
    index (0-based, in the order given) of the first area having that content word. Matching
    is therefore case-insensitive and on whole words only: no stemming, so ``cost`` does not
    match ``costs`` and ``art`` does not match ``start``.

Word frequencies (:func:`word_frequencies`)
    The normalised tokens of a text minus the stop words, counted, sorted by count (highest
    first) then by word (ascending code point order), and cut to the ``top`` first.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from statistics import fmean
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from consortium_lab.engine.result import MemberResult

__all__ = [
    "STOP_WORDS",
    "Span",
    "SpanKind",
    "Token",
    "consensus",
    "highlight_agreement",
    "highlight_refinement_areas",
    "jaccard",
    "member_key",
    "member_texts",
    "normalise",
    "pairwise_agreement",
    "shingles",
    "tokenize",
    "word_frequencies",
]

SHINGLE_SIZE = 3
"""The number of consecutive tokens in a shingle."""

MIN_CONTENT_WORD_LENGTH = 3
"""Refinement-area words shorter than this (in characters, normalised) are ignored."""

_STOP_WORD_TEXT = """
    a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does
    doesn't doing don't down during each either etc few for from further had hadn't has hasn't
    have haven't having he he'd he'll he's her here here's hers herself him himself his how
    how's however i i'd i'll i'm i've if in into is isn't it it's its itself just let's may me
    might more most much must mustn't my myself neither no nor not now of off on once only or
    other ought our ours ourselves out over own same shall shan't she she'd she'll she's should
    shouldn't so some such than that that's the their theirs them themselves then there there's
    these they they'd they'll they're they've this those though through thus to too under until
    up upon us very was wasn't we we'd we'll we're we've were weren't what what's when when's
    where where's whether which while who who's whom whose why why's will with within without
    won't would wouldn't yet you you'd you'll you're you've your yours yourself yourselves
"""

STOP_WORDS: frozenset[str] = frozenset(_STOP_WORD_TEXT.split())
"""The English stop words removed for word frequencies and refinement-area content words
(normalised: lower case, straight apostrophes)."""

SpanKind = Literal["shared", "unique", "refinement"]


@dataclass(frozen=True)
class Span:
    """A character range ``text[start:end]`` of an original text, with what it means.

    ``kind`` is ``"shared"`` or ``"unique"`` for :func:`highlight_agreement` (``shared_with``:
    the other member keys whose texts share it, empty for unique spans) and ``"refinement"``
    for :func:`highlight_refinement_areas` (``area``: the 0-based index of the refinement
    area it relates to; ``None`` for other kinds).
    """

    start: int
    end: int
    kind: SpanKind
    shared_with: list[str] = field(default_factory=list)
    area: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The span as JSON-ready data: ``start``, ``end``, ``kind``, ``shared_with`` (a
        list, possibly empty) and ``area`` (an int or ``None``); always all five keys."""
        return {
            "start": self.start,
            "end": self.end,
            "kind": self.kind,
            "shared_with": list(self.shared_with),
            "area": self.area,
        }


class Token(NamedTuple):
    """One token of a text: its normalised form and its ``[start, end)`` offsets in the
    original text."""

    norm: str
    start: int
    end: int


# -- tokenising --------------------------------------------------------------------------------


def _combining_marks_class() -> str:
    """A regex character-class body of the combining marks that ``\\w`` does not match."""
    ranges: list[list[int]] = []
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if unicodedata.category(char)[0] == "M" and not char.isalnum() and char != "_":
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
        for lo, hi in ranges
    )


@functools.cache
def _token_pattern() -> re.Pattern[str]:
    # Built once, on first use (scanning the Unicode table takes a few tens of milliseconds).
    word = rf"[\w{_combining_marks_class()}]"
    return re.compile(rf"{word}+(?:['’]{word}+)*")


def normalise(token: str) -> str:
    """A token's normalised form: NFKC, case-folded, ``’`` replaced by ``'``."""
    return unicodedata.normalize("NFKC", token).casefold().replace("’", "'")


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text`` in order, with offsets into ``text`` (see the module docstring
    for the exact definition)."""
    return [
        Token(normalise(match.group()), match.start(), match.end())
        for match in _token_pattern().finditer(text)
    ]


def _units(norms: Sequence[str]) -> list[tuple[str, ...]]:
    """The shingles of a token sequence, in position order (with repeats)."""
    if len(norms) >= SHINGLE_SIZE:
        return [tuple(norms[i : i + SHINGLE_SIZE]) for i in range(len(norms) - SHINGLE_SIZE + 1)]
    return [tuple(norms)] if norms else []


def shingles(text: str) -> set[tuple[str, ...]]:
    """The shingle set of ``text``: its normalised word 3-grams; for a text of one or two
    tokens, the single tuple of all its tokens; for a text without tokens, the empty set."""
    return set(_units([token.norm for token in tokenize(text)]))


def jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    """``|a ∩ b| / |a ∪ b|``; 0.0 when both sets are empty."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


# -- member texts ------------------------------------------------------------------------------


def member_key(model: str, instance: int) -> str:
    """The key naming one member everywhere in a run: ``"model#instance"``."""
    return f"{model}#{instance}"


def member_texts(members: Iterable[MemberResult]) -> dict[str, str]:
    """``{member key: answer}`` for the successful members among ``members`` (failed ones
    are left out), in the order given. Pass ``result.final_answers`` for the last iteration's
    answers. The answer is the member's parsed ``answer``, else its full ``text``."""
    return {
        member_key(m.model, m.instance): (m.answer or m.text) for m in members if m.status == "done"
    }


# -- agreement ---------------------------------------------------------------------------------


def highlight_agreement(texts: Mapping[str, str]) -> dict[str, list[Span]]:
    """Shared and unique spans of each member text, keyed like ``texts`` (every key is
    present; an empty text maps to ``[]``). See the module docstring for the definition."""
    keys = list(texts)
    order = {key: i for i, key in enumerate(keys)}
    tokens = {key: tokenize(texts[key]) for key in keys}
    units = {key: _units([t.norm for t in tokens[key]]) for key in keys}
    holders: dict[tuple[str, ...], set[str]] = {}
    for key in keys:
        for unit in units[key]:
            holders.setdefault(unit, set()).add(key)

    spans: dict[str, list[Span]] = {}
    for key in keys:
        toks, own = tokens[key], units[key]
        n = len(toks)
        result: list[Span] = []
        for j, token in enumerate(toks):
            if n >= SHINGLE_SIZE:
                first, last = max(0, j - SHINGLE_SIZE + 1), min(j, n - SHINGLE_SIZE)
                containing = own[first : last + 1]
            else:
                containing = own
            others: set[str] = set()
            for unit in containing:
                others |= holders[unit]
            others.discard(key)
            shared_with = sorted(others, key=order.__getitem__)
            kind: SpanKind = "shared" if shared_with else "unique"
            previous = result[-1] if result else None
            if previous is not None and (previous.kind, previous.shared_with) == (
                kind,
                shared_with,
            ):
                result[-1] = Span(previous.start, token.end, kind, shared_with)
            else:
                result.append(Span(token.start, token.end, kind, shared_with))
        spans[key] = result
    return spans


def pairwise_agreement(texts: Mapping[str, str]) -> dict[tuple[str, str], float]:
    """The Jaccard similarity of the shingle sets of every unordered pair of non-empty
    texts, keyed ``(a, b)`` with ``a`` before ``b`` in the order of ``texts``. Empty texts
    (no tokens) take no part; ``{}`` when fewer than two texts are non-empty."""
    sets = {key: shingles(text) for key, text in texts.items()}
    present = [key for key, units in sets.items() if units]
    return {(a, b): jaccard(sets[a], sets[b]) for a, b in combinations(present, 2)}


def consensus(texts: Mapping[str, str]) -> float | None:
    """The mean pairwise agreement of the non-empty texts, in [0, 1]; ``None`` when fewer
    than two texts are non-empty (agreement is undefined then, not 0 or 1)."""
    pairs = pairwise_agreement(texts)
    return fmean(pairs.values()) if pairs else None


# -- refinement areas and words ---------------------------------------------------------------


def _content_words(text: str) -> set[str]:
    return {
        token.norm
        for token in tokenize(text)
        if token.norm not in STOP_WORDS and len(token.norm) >= MIN_CONTENT_WORD_LENGTH
    }


def highlight_refinement_areas(synthesis: str, areas: Sequence[str]) -> list[Span]:
    """Spans of ``synthesis`` (kind ``"refinement"``, sorted, non-overlapping) where a
    content word of one of ``areas`` occurs; each span's ``area`` is the index of the first
    area with that word. See the module docstring for the method."""
    words = [_content_words(area) for area in areas]
    spans: list[Span] = []
    for token in tokenize(synthesis):
        for index, area_words in enumerate(words):
            if token.norm in area_words:
                spans.append(Span(token.start, token.end, "refinement", area=index))
                break
    return spans


def word_frequencies(text: str, top: int = 50) -> list[tuple[str, int]]:
    """The ``top`` most frequent normalised non-stop-words of ``text`` as ``(word, count)``,
    by count (highest first) then word. Raises ``ValueError`` for a negative ``top``."""
    if top < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    counts = Counter(token.norm for token in tokenize(text) if token.norm not in STOP_WORDS)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
