"""Tag scanning and the small readers the member, arbiter and ranking parsers share."""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from consortium_lab.config.rules import normalize_confidence

# --------------------------------------------------------------------------- tag names

_THOUGHT_TAGS = ("thinking", "think", "thought_process", "problem_breakdown")
_ANSWER_TAGS = ("answer", "updated_response")
_CONFIDENCE_TAG = "confidence"
_ARBITER_WRAPPER = "synthesis_output"
_ARBITER_FIELDS = (
    "synthesis",
    "confidence",
    "analysis",
    "dissent",
    "needs_iteration",
    "refinement_areas",
    "ranking",
)
# Sections inside <synthesis_output> that are not part of the synthesis itself.
_ARBITER_META = ("first_impression", *(f for f in _ARBITER_FIELDS if f != "synthesis"))
_ARBITER_SECTION_TAGS = ("first_impression", *_ARBITER_FIELDS)
_MEMBER_SECTION_TAGS = (*_ANSWER_TAGS, _CONFIDENCE_TAG)
_ALL_KNOWN_TAGS = (
    *_THOUGHT_TAGS,
    *_ANSWER_TAGS,
    _ARBITER_WRAPPER,
    *_ARBITER_SECTION_TAGS,
)

_SNIP = 60


def _snip(text: str, limit: int = _SNIP) -> str:
    """Return ``text`` shortened for a warning message, as a repr."""
    text = text.strip()
    if len(text) > limit:
        text = text[:limit] + "…"
    return repr(text)


# --------------------------------------------------------------------------- confidence


_NUM = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
# A number, optionally followed by "%" / "percent" or by "/ N" / "out of N".
_CONF_TOKEN = re.compile(
    rf"(?<![\w.+\-])((?>{_NUM}))(?!\w)"
    rf"(?:\s*(%|percent\b)|\s*(?:/|\bout\s+of\b)\s*((?>{_NUM}))(?!\w))?",
    re.IGNORECASE,
)
# "Confidence: 0.9", "**Confidence level**: 85%", "confidence = 0.7", "confidence is 80%".
_CONF_KEYWORD = re.compile(
    r"\bconfidence(?:\s+(?:level|score|rating|value))?[\s*_:=`'\"|>\-]*"
    r"(?:(?:is|of|at|about|around|approximately|~)\b[\s*_:=`'\"]*)?",
    re.IGNORECASE,
)
# The same, but only at the start of a line ("Confidence: 0.8", "**Confidence:** 85%"): used
# to find a member's confidence in untagged text without reading prose such as "a confidence
# of 95%" as one.
_LINE_CONF_KEYWORD = re.compile(
    r"^[ \t*_#>\-]*" + _CONF_KEYWORD.pattern[2:], re.IGNORECASE | re.MULTILINE
)


def _confidence_from_match(match: re.Match[str]) -> tuple[float | None, list[str]]:
    """Turn one :data:`_CONF_TOKEN` match into a ``[0, 1]`` value (or ``None``)."""
    token = match.group(0).strip()
    try:
        number = float(match.group(1))
    except (ValueError, OverflowError):  # pragma: no cover - the regex only admits numbers
        return None, [f"could not read a number from {_snip(token)}"]
    if match.group(2):  # percentage
        value = number / 100.0
        if math.isfinite(value) and 0.0 <= value <= 1.0:
            return value, []
        return None, [f"confidence {_snip(token)} is not a percentage between 0 and 100"]
    if match.group(3) is not None:  # fraction
        try:
            denominator = float(match.group(3))
        except (ValueError, OverflowError):  # pragma: no cover
            return None, [f"could not read a number from {_snip(token)}"]
        if not math.isfinite(denominator) or denominator <= 0:
            return None, [f"confidence {_snip(token)} has an unusable denominator"]
        value = number / denominator
        if math.isfinite(value) and 0.0 <= value <= 1.0:
            return value, []
        return None, [f"confidence {_snip(token)} is not a fraction between 0 and 1"]
    try:
        value, warning = normalize_confidence(match.group(1))
    except ValueError as exc:
        return None, [str(exc)]
    return value, [warning] if warning else []


def _keyword_confidence(
    text: str, keyword_re: re.Pattern[str] = _CONF_KEYWORD
) -> tuple[float | None, list[str]] | None:
    """Read a confidence that follows the word "confidence"; ``None`` when there is none."""
    for keyword in keyword_re.finditer(text):
        match = _CONF_TOKEN.match(text, keyword.end())
        if match:
            return _confidence_from_match(match)
    return None


def parse_confidence_text(text: str) -> tuple[float | None, list[str]]:
    """Read a confidence written in free text.

    Accepts ``0.85``, ``85``, ``85%``, ``85 percent``, ``0.85/1``, ``8/10``, ``85/100``,
    ``8 out of 10`` and ``Confidence: 0.9``, with surrounding words or markdown. A number right
    after the word "confidence" wins; otherwise the first number is used. Bare numbers follow
    :func:`normalize_confidence` (``85`` is read as ``0.85``, with a warning).

    Never raises.

    Returns:
        ``(value, warnings)``: ``value`` is in ``[0, 1]``, or ``None`` when no usable
        confidence was found (the warnings then say why).
    """
    try:
        if not isinstance(text, str):
            return None, [f"confidence text is not a string: {type(text).__name__}"]
        if not text.strip():
            return None, ["empty confidence text"]
        found = _keyword_confidence(text)
        if found is not None:
            return found
        match = _CONF_TOKEN.search(text)
        if match is None:
            return None, [f"no number found in confidence text {_snip(text)}"]
        value, warnings = _confidence_from_match(match)
        if _CONF_TOKEN.search(text, match.end()) is not None:
            warnings.append(f"several numbers in confidence text {_snip(text)}; used the first")
        return value, warnings
    except Exception as exc:  # pragma: no cover - safety net: this function never raises
        return None, [f"could not read confidence: {exc!r}"]


# --------------------------------------------------------------------------- tag scanning


@lru_cache(maxsize=64)
def _open_re(names: tuple[str, ...]) -> re.Pattern[str]:
    """Opening tags for ``names``: any case, spaces, attributes (``<Rank position="1">``)."""
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"<\s*({alternatives})(?=[\s>/])[^<>]*>", re.IGNORECASE)


@lru_cache(maxsize=64)
def _close_re(names: tuple[str, ...]) -> re.Pattern[str]:
    """Closing tags for ``names``, any case, with stray spaces (``</ Confidence >``)."""
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"<\s*/\s*({alternatives})\s*>", re.IGNORECASE)


_KNOWN_MARKUP = re.compile(
    r"<\s*/?\s*(?:"
    + "|".join(re.escape(n) for n in sorted({*_ALL_KNOWN_TAGS, "area", "rank"}, key=len)[::-1])
    + r")(?=[\s>/])[^<>]*>",
    re.IGNORECASE,
)


def _strip_trailing_fence(text: str) -> str:
    """Drop a trailing ``` that closes a fence opened outside ``text`` (an odd one out)."""
    stripped = text.rstrip()
    if stripped.endswith("```") and stripped.count("```") % 2 == 1:
        return stripped[:-3]
    return text


class _Tags:
    """Where the tags of one text are, found once per tag set so that scanning stays linear."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._found: dict[tuple[bool, tuple[str, ...]], tuple[list[int], list[re.Match[str]]]]
        self._found = {}

    def _all(self, closing: bool, names: tuple[str, ...]) -> tuple[list[int], list[re.Match[str]]]:
        key = (closing, names)
        found = self._found.get(key)
        if found is None:
            pattern = _close_re(names) if closing else _open_re(names)
            matches = list(pattern.finditer(self.text))
            found = ([m.start() for m in matches], matches)
            self._found[key] = found
        return found

    def next(
        self, names: tuple[str, ...], pos: int, hi: int | None = None, *, closing: bool = False
    ) -> re.Match[str] | None:
        """The first tag starting at or after ``pos`` that ends by ``hi``."""
        starts, matches = self._all(closing, names)
        index = bisect_left(starts, pos)
        if index < len(matches) and (hi is None or matches[index].end() <= hi):
            return matches[index]
        return None

    def last(self, names: tuple[str, ...], lo: int, hi: int) -> re.Match[str] | None:
        """The last opening tag of ``names`` lying within ``[lo, hi)``."""
        starts, matches = self._all(False, names)
        index = bisect_left(starts, hi) - 1
        while index >= 0 and matches[index].end() > hi:
            index -= 1
        if index >= 0 and matches[index].start() >= lo:
            return matches[index]
        return None


@dataclass(frozen=True)
class _Section:
    """One tagged section found in a text (offsets into that text)."""

    name: str
    start: int
    content_start: int
    content_end: int
    end: int
    closed: bool

    def content(self, text: str) -> str:
        body = text[self.content_start : self.content_end]
        if not self.closed:
            body = _strip_trailing_fence(body)
        return body.strip()


def _is_self_closing(tag: str) -> bool:
    return tag[:-1].rstrip().endswith("/")


def _section_at(tags: _Tags, match: re.Match[str], hi: int, stops: tuple[str, ...]) -> _Section:
    """Build the section opened by ``match``: up to its close tag, else to a stop tag or ``hi``."""
    name = match.group(1).lower()
    if _is_self_closing(match.group(0)):
        return _Section(name, match.start(), match.end(), match.end(), match.end(), True)
    close = tags.next((name,), match.end(), hi, closing=True)
    if close is not None:
        return _Section(name, match.start(), match.end(), close.start(), close.end(), True)
    content_end = hi
    if stops:
        stop = tags.next(stops, match.end(), hi)
        if stop is not None:
            content_end = stop.start()
    return _Section(name, match.start(), match.end(), content_end, content_end, False)


def _find_last(
    tags: _Tags,
    names: tuple[str, ...],
    *,
    lo: int = 0,
    hi: int | None = None,
    stops: tuple[str, ...] = (),
) -> _Section | None:
    """The section opened by the LAST opening tag of ``names`` within ``text[lo:hi]``."""
    end = len(tags.text) if hi is None else hi
    last = tags.last(names, lo, end)
    if last is None:
        return None
    return _section_at(tags, last, end, stops)


def _scan(tags: _Tags, names: tuple[str, ...], stops: tuple[str, ...]) -> list[_Section]:
    """All non-overlapping sections of ``names``, in order (tags inside one are skipped)."""
    sections: list[_Section] = []
    pos = 0
    while True:
        match = tags.next(names, pos)
        if match is None:
            return sections
        section = _section_at(tags, match, len(tags.text), stops)
        sections.append(section)
        pos = max(section.end, match.end())


def _cut(text: str, sections: Iterable[_Section]) -> str:
    """``text`` with ``sections`` (tags and contents) removed."""
    pieces: list[str] = []
    pos = 0
    for section in sorted(sections, key=lambda s: s.start):
        if section.start < pos:
            continue
        pieces.append(text[pos : section.start])
        pos = section.end
    pieces.append(text[pos:])
    return "".join(pieces)


def _unclosed_warning(name: str) -> str:
    return f"<{name}> was opened but never closed (truncated output?)"


def _unfence(text: str) -> str:
    """Strip a markdown code fence wrapped around the whole answer (```xml ... ```)."""
    stripped = text.strip()
    if not stripped.startswith("```"):
        return text
    newline = stripped.find("\n")
    inner = "" if newline == -1 else stripped[newline + 1 :]
    inner = _strip_trailing_fence(inner)
    # Only unwrap when the fence held structured output, not e.g. a code-only answer.
    if _open_re(_ALL_KNOWN_TAGS).search(inner) or inner.lstrip().startswith("{"):
        return inner
    return text


def _split_thoughts(
    text: str, stop_groups: Sequence[tuple[str, ...]]
) -> tuple[str, list[str], list[str], bool]:
    """Remove thought blocks (``<thinking>`` and friends) from ``text``.

    A thought block that is never closed ends where the first tag of the first matching
    ``stop_groups`` entry opens, else at the end of the text.

    Returns:
        ``(rest, thoughts, warnings, truncated)``; ``truncated`` is true when an unclosed
        thought block ran to the end of the text.
    """
    tags = _Tags(text)
    pieces: list[str] = []
    thoughts: list[str] = []
    warnings: list[str] = []
    truncated = False
    pos = 0
    while True:
        match = tags.next(_THOUGHT_TAGS, pos)
        if match is None:
            pieces.append(text[pos:])
            break
        pieces.append(text[pos : match.start()])
        name = match.group(1).lower()
        if _is_self_closing(match.group(0)):
            pos = match.end()
            continue
        close = tags.next((name,), match.end(), closing=True)
        if close is not None:
            thoughts.append(text[match.end() : close.start()].strip())
            pos = close.end()
            continue
        end = len(text)
        for group in stop_groups:
            stop = tags.next(group, match.end())
            if stop is not None:
                end = stop.start()
                break
        thoughts.append(_strip_trailing_fence(text[match.end() : end]).strip())
        if end == len(text):
            truncated = True
            warnings.append(_unclosed_warning(name))
        else:
            warnings.append(f"<{name}> was never closed; it was taken to end at the next section")
        pos = end
    return "".join(pieces), [t for t in thoughts if t], warnings, truncated


def _strip_markup(text: str) -> str:
    """Remove any leftover known tags (but keep the text between them)."""
    return _KNOWN_MARKUP.sub("", text).strip()


# --------------------------------------------------------------------------- small readers

_TRUE_WORDS = frozenset({"true", "yes", "y", "1", "needed", "required"})
_FALSE_WORDS = frozenset({"false", "no", "n", "0", "none"})
_WORD = re.compile(r"[a-z0-9]+", re.IGNORECASE)


def _parse_bool(value: Any) -> bool | None:
    """Read ``true/false/yes/no`` (any case, with punctuation around); ``None`` if unclear."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value in (0, 1):
            return bool(value)
        return None
    if not isinstance(value, str):
        return None
    word = _WORD.search(value)
    if word is None:
        return None
    token = word.group(0).lower()
    if token in _TRUE_WORDS:
        return True
    if token in _FALSE_WORDS:
        return False
    return None


_BULLET = re.compile(r"^\s*(?:[-*•+‣◦▪]|[0-9]{1,3}[.)]|\([0-9]{1,3}\))\s+(.*)$")
_AREA_MARKUP = re.compile(r"<\s*/?\s*area(?=[\s>/])[^<>]*>", re.IGNORECASE)
_NOTHING = frozenset({"none", "n/a", "na", "nil", "null", "nothing", "-", "none needed"})


def _parse_areas(text: str) -> list[str]:
    """Read refinement areas: ``<area>`` items, bullets, numbered lines or plain lines."""
    if _AREA_MARKUP.search(text):
        items = [piece.strip() for piece in _AREA_MARKUP.split(text)]
        areas = [item for item in items if item]
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        bulleted = [_BULLET.match(line) for line in lines]
        if any(bulleted):
            areas = []
            for line, bullet in zip(lines, bulleted, strict=True):
                if bullet is not None:
                    areas.append(bullet.group(1).strip())
                elif areas:  # continuation of the previous item
                    areas[-1] = f"{areas[-1]} {line.strip()}"
                elif not line.rstrip().endswith(":"):  # a lead-in line such as "Areas:" is dropped
                    areas.append(line.strip())
        else:
            areas = [line.strip() for line in lines]
    areas = [area for area in areas if area]
    if len(areas) == 1 and areas[0].strip(" .!*_`").lower() in _NOTHING:
        return []
    return areas


def _areas_from_json(value: Any) -> list[str]:
    if isinstance(value, str):
        return _parse_areas(value)
    if isinstance(value, list | tuple):
        areas = [str(item).strip() for item in value if item is not None and str(item).strip()]
        if len(areas) == 1 and areas[0].strip(" .!*_`").lower() in _NOTHING:
            return []
        return areas
    if value is None:
        return []
    return _parse_areas(str(value))
