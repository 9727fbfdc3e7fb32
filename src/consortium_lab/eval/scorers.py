"""Scorers: is an answer correct against the item's reference?

Each scorer reads (``extract``) the part of the answer it compares, then compares it with the
reference (``score``). Built in, by name (:func:`get_scorer`):

``exact``
    The whole answer equals the reference after whitespace is collapsed and case folded.
``numeric``
    The last number in the answer (thousands separators ``1,234``, signs ``-``/``+``/``−``,
    decimals) equals the reference's last number within ``tolerance`` (absolute, default 1e-6).
``choice``
    A letter A-E ("B", "(B)", "B)", "Answer: B") or the text of one of the item's ``choices``;
    the reference may be a letter or a choice's text.
``contains``
    The normalised reference occurs in the normalised answer.
``regex``
    ``RegexScorer(pattern)``: the pattern's first group (or whole match) in the answer, compared
    with the reference as ``exact`` does.

A Python callable ``f(answer, item) -> bool`` is a scorer too (:class:`CallableScorer`), and
``judge`` (:mod:`consortium_lab.eval.judge`) asks a model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from consortium_lab.eval.dataset import Item

__all__ = [
    "CallableScorer",
    "ChoiceScorer",
    "ContainsScorer",
    "ExactScorer",
    "NumericScorer",
    "RegexScorer",
    "Score",
    "Scorer",
    "get_scorer",
    "last_number",
    "normalise",
]


@dataclass(frozen=True)
class Score:
    """A verdict: what was read from the answer, whether it is right, and a judge's words."""

    correct: bool
    extracted: str | None = None
    verdict: str | None = None


@runtime_checkable
class Scorer(Protocol):
    """Anything with a ``name``, ``extract`` and an async ``score``."""

    name: str

    def extract(self, answer: str) -> str | None:
        """The part of ``answer`` this scorer compares (None: nothing readable)."""
        ...

    async def score(self, answer: str, item: Item) -> Score:
        """Whether ``answer`` is right for ``item``."""
        ...


def normalise(text: str) -> str:
    """Whitespace collapsed to single spaces, case folded."""
    return " ".join(text.split()).casefold()


class _Simple:
    """A scorer whose verdict needs no model: ``check`` compares the extracted text."""

    name = "simple"

    def extract(self, answer: str) -> str | None:
        return normalise(answer)

    def check(self, extracted: str, item: Item) -> bool:
        raise NotImplementedError

    async def score(self, answer: str, item: Item) -> Score:
        extracted = self.extract(answer)
        return Score(extracted is not None and self.check(extracted, item), extracted)


class ExactScorer(_Simple):
    name = "exact"

    def check(self, extracted: str, item: Item) -> bool:
        return extracted == normalise(item.answer)


class ContainsScorer(_Simple):
    name = "contains"

    def check(self, extracted: str, item: Item) -> bool:
        return normalise(item.answer) in extracted


_NUMBER = re.compile(r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+\u2212]?\.\d+")


def last_number(text: str) -> float | None:
    """The last number written in ``text`` (``1,234.5``, ``-7``, ``−3``), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    return float(found[-1].replace(",", "").replace("\u2212", "-"))


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


class NumericScorer(_Simple):
    """The last number in the answer against the reference's, within ``tolerance``."""

    name = "numeric"

    def __init__(self, tolerance: float = 1e-6) -> None:
        if tolerance < 0:
            raise ValueError(f"tolerance: expected a number >= 0 (got {tolerance})")
        self.tolerance = tolerance

    def extract(self, answer: str) -> str | None:
        value = last_number(answer)
        return None if value is None else _number_text(value)

    def check(self, extracted: str, item: Item) -> bool:
        reference = last_number(item.answer)
        if reference is None:
            raise ValueError(f"item {item.id}: the reference {item.answer!r} holds no number")
        return abs(float(extracted) - reference) <= self.tolerance


# A bare letter may be lower case; after "answer is" only a capital counts, so "the answer
# is a bit unclear" does not read as choice A.
_LETTER = re.compile(
    r"^\s*\(?([A-Ea-e])\)?[.):]?\s*$"
    r"|(?i:answer|option|choice)\s*(?:is|:)?\s*\(?([A-E])\b"
    r"|^\s*\(?([A-E])[).:]\s"
)
LETTERS = "ABCDE"


class ChoiceScorer(_Simple):
    """A letter A-E or the text of one of the item's choices."""

    name = "choice"

    def extract(self, answer: str) -> str | None:
        match = _LETTER.search(answer)
        if match:
            return next(g for g in match.groups() if g).upper()
        return normalise(answer) or None

    def _letter(self, text: str, item: Item) -> str | None:
        if len(text) == 1 and text.upper() in LETTERS:
            return text.upper()
        wanted = normalise(text).rstrip(".")
        for letter, choice in zip(LETTERS, item.choices, strict=False):
            if normalise(choice) == wanted:
                return letter
        # A longer answer naming exactly one choice's text.
        named = [
            letter
            for letter, choice in zip(LETTERS, item.choices, strict=False)
            if normalise(choice) in wanted
        ]
        return named[0] if len(named) == 1 else None

    def check(self, extracted: str, item: Item) -> bool:
        reference = self._letter(item.answer, item)
        if reference is None:
            raise ValueError(
                f"item {item.id}: the reference {item.answer!r} is neither a letter A-E nor"
                " one of its choices"
            )
        return self._letter(extracted, item) == reference


class RegexScorer(_Simple):
    """``pattern``'s first group (or whole match) compared with the reference as ``exact``."""

    name = "regex"

    def __init__(self, pattern: str) -> None:
        try:
            self.pattern = re.compile(pattern, re.IGNORECASE | re.DOTALL)
        except re.error as exc:
            raise ValueError(f"regex scorer: invalid pattern {pattern!r}: {exc}") from exc

    def extract(self, answer: str) -> str | None:
        match = self.pattern.search(answer)
        if match is None:
            return None
        return normalise(match.group(1) if self.pattern.groups else match.group(0))

    def check(self, extracted: str, item: Item) -> bool:
        return extracted == normalise(item.answer)


class CallableScorer:
    """A Python function ``f(answer, item) -> bool`` as a scorer (``extract`` keeps the
    normalised answer)."""

    def __init__(self, function: Callable[[str, Item], Any], name: str | None = None) -> None:
        self.function = function
        self.name: str = name or str(getattr(function, "__name__", "callable"))

    def extract(self, answer: str) -> str | None:
        return normalise(answer)

    async def score(self, answer: str, item: Item) -> Score:
        verdict = self.function(answer, item)
        if not isinstance(verdict, bool):
            raise TypeError(
                f"scorer {self.name}: expected True or False, got {type(verdict).__name__}"
            )
        return Score(verdict, self.extract(answer))


NAMES = ("exact", "numeric", "choice", "contains", "regex", "judge")


def get_scorer(spec: Any, **options: Any) -> Scorer:
    """A scorer from a name in :data:`NAMES` (``options``: ``tolerance`` for numeric,
    ``pattern`` for regex, ``model`` and ``gateway`` for judge), a callable, or a scorer."""
    if isinstance(spec, Scorer):
        return spec
    if callable(spec):
        return CallableScorer(spec)
    if spec == "exact":
        return ExactScorer()
    if spec == "contains":
        return ContainsScorer()
    if spec == "choice":
        return ChoiceScorer()
    if spec == "numeric":
        return NumericScorer(float(options.get("tolerance") or 1e-6))
    if spec == "regex":
        if not options.get("pattern"):
            raise ValueError("the regex scorer needs a pattern (--pattern / pattern=)")
        return RegexScorer(options["pattern"])
    if spec == "judge":
        from consortium_lab.eval.judge import JudgeScorer

        if not options.get("model"):
            raise ValueError("the judge scorer needs a model (--judge MODEL / model=)")
        return JudgeScorer(options["model"], gateway=options.get("gateway"))
    raise ValueError(f"unknown scorer {spec!r}: use one of {', '.join(NAMES)} or a callable")
