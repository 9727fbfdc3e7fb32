"""Tolerant readers for what consortium members and arbiters write.

Everything here is pure: no I/O and no model calls. The ``parse_*`` functions never raise,
whatever string they are given (empty, truncated, binary junk, huge); problems are reported
as human-readable ``warnings`` instead.

:func:`normalize_confidence` is the single rule used everywhere for confidences and
thresholds: a value in ``[0, 1]`` is taken as is, a value in ``(1, 100]`` is read as a
percentage (with a warning), anything else is rejected.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field

from consortium_lab.config.rules import normalize_confidence

__all__ = [
    "ArbiterParse",
    "MemberParse",
    "normalize_confidence",
    "parse_arbiter_response",
    "parse_confidence_text",
    "parse_member_response",
    "parse_ranking",
]

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


# --------------------------------------------------------------------------- ranking

_RANK_OPEN = re.compile(r"<\s*rank(?=[\s>/])([^<>]*)>", re.IGNORECASE)
_RANK_NEXT = re.compile(r"<\s*/?\s*rank(?=[\s>/])", re.IGNORECASE)
_POSITION_ATTR = re.compile(r"position\s*=\s*[\"']?\s*([0-9]{1,9})", re.IGNORECASE)
_INT = re.compile(r"(?<![0-9.])[0-9]{1,9}(?![0-9])")
_LIST_NUMBERING = re.compile(
    r"^\s*(?:[-*•]\s*)?(?:(?:rank|position|place)\s*)?#?[0-9]{1,3}\s*(?:[.):]|st|nd|rd|th)\s+",
    re.IGNORECASE,
)
_RANKING_KEYWORD = re.compile(r"^[\W_]*(?:final\s+)?ranking[\W_]*?:(.*)$", re.IGNORECASE)


def _dedupe(ids: Iterable[int]) -> list[int]:
    seen: set[int] = set()
    out: list[int] = []
    for item in ids:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _rank_items(text: str) -> list[int]:
    """IDs from ``<rank position="N">ID</rank>`` items, ordered by position."""
    items: list[tuple[float, int, int]] = []
    for index, match in enumerate(_RANK_OPEN.finditer(text)):
        following = _RANK_NEXT.search(text, match.end())
        content = text[match.end() : following.start() if following else len(text)]
        found = _INT.search(content)
        if found is None:
            continue
        position = _POSITION_ATTR.search(match.group(1))
        key = float(position.group(1)) if position else math.inf
        items.append((key, index, int(found.group(0))))
    items.sort(key=lambda item: (item[0], item[1]))
    return [item[2] for item in items]


def _list_ids(text: str) -> list[int]:
    """IDs from a comma/line separated list (``2, 1, 3``, ``1. Response 2``, ``#3 > #1``)."""
    ids: list[int] = []
    for line in text.splitlines():
        numbering = _LIST_NUMBERING.match(line)
        if numbering and _INT.search(line, numbering.end()):
            line = line[numbering.end() :]
        ids.extend(int(m.group(0)) for m in _INT.finditer(line))
    return ids


def _ranking_from_body(text: str) -> list[int]:
    """Read the inside of a ``<ranking>`` section."""
    ids = _rank_items(text)
    if not ids:
        ids = _list_ids(_strip_markup(text))
    return _dedupe(ids)


_MAX_RANKING_LINES = 100  # lines read after a bare "Ranking:" (keeps junk input linear)


def _keyword_ranking(text: str) -> list[int]:
    """Read a ``Ranking: 2, 1, 3`` line (or the lines that follow a bare ``Ranking:``)."""
    lines = text.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        match = _RANKING_KEYWORD.match(lines[index])
        if match is None:
            continue
        ids = _list_ids(match.group(1))
        if not ids:
            block: list[str] = []
            for line in lines[index + 1 : index + 1 + _MAX_RANKING_LINES]:
                if _RANKING_KEYWORD.match(line):
                    break
                if not line.strip():
                    if block:
                        break
                    continue
                block.append(line)
            ids = _list_ids("\n".join(block))
        if ids:
            return _dedupe(ids)
    return []


def parse_ranking(text: str) -> list[int]:
    """Read a ranking of response IDs, best first.

    Understands the rank judge's output (``Reasoning: ...`` then
    ``<ranking><rank position="1">2</rank>...</ranking>``), rank items in any order (they are
    sorted by ``position``), ``Response 2`` / ``#2`` style IDs, a comma or line separated list
    of IDs inside ``<ranking>``, and a plain ``Ranking: 2, 1, 3`` line. ``<thinking>`` blocks
    are ignored; when several ``<ranking>`` sections exist the last one wins. Duplicates are
    dropped, keeping the first occurrence.

    Never raises.

    Returns:
        The IDs in rank order, or ``[]`` when no ranking was found.
    """
    try:
        if not isinstance(text, str) or not text.strip():
            return []
        body, _thoughts, _warnings, _truncated = _split_thoughts(_unfence(text), (("ranking",),))
        section = _find_last(_Tags(body), ("ranking",))
        if section is not None:
            ids = _ranking_from_body(body[section.content_start : section.content_end])
            if ids:
                return ids
        ids = _dedupe(_rank_items(body))
        if ids:
            return ids
        return _keyword_ranking(_strip_markup(body))
    except Exception:  # pragma: no cover - safety net: this function never raises
        return []


def _ranking_from_json(value: Any) -> list[int]:
    if isinstance(value, str):
        return _ranking_from_body(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, list | tuple):
        return []
    keyed: list[tuple[float, int, int]] = []
    for index, item in enumerate(value):
        position: float = math.inf
        ident: Any = item
        if isinstance(item, dict):
            lowered = {str(k).lower(): v for k, v in item.items()}
            ident = next(
                (lowered[k] for k in ("id", "response_id", "response", "model") if k in lowered),
                None,
            )
            raw_position = lowered.get("position", lowered.get("rank"))
            if isinstance(raw_position, int | float) and not isinstance(raw_position, bool):
                position = float(raw_position)
        if isinstance(ident, bool):
            continue
        if isinstance(ident, int):
            keyed.append((position, index, ident))
        elif isinstance(ident, float) and ident.is_integer():
            keyed.append((position, index, int(ident)))
        elif isinstance(ident, str):
            found = _INT.search(ident)
            if found is not None:
                keyed.append((position, index, int(found.group(0))))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return _dedupe(item[2] for item in keyed)


# --------------------------------------------------------------------------- members


class MemberParse(BaseModel):
    """What a consortium member's response says, read tolerantly."""

    answer: str = Field(description="The member's answer (the <answer> section, or the text).")
    thought_process: str = Field(description="<thinking>/<thought_process>/... contents.")
    confidence: float | None = Field(description="In [0, 1]; None when the member gave none.")
    warnings: list[str] = Field(default_factory=list)
    raw: str = Field(description="The text exactly as received.")


def parse_member_response(text: str) -> MemberParse:
    """Read a member response in the ``system_prompt.xml`` / iteration-prompt format.

    * thought process: ``<thinking>``, ``<thought_process>`` or ``<problem_breakdown>``
      (several blocks are joined);
    * answer: ``<answer>`` or ``<updated_response>`` (the last one outside the thought
      process); without one, the text with the recognised sections removed (or, if nothing
      is left, the whole text);
    * confidence: ``<confidence>``, read with :func:`parse_confidence_text`; without that tag a
      ``Confidence: 0.8`` phrase outside the thought process is used; otherwise ``None``
      (never a made-up default).

    Tags are case-insensitive and may carry attributes. A section whose closing tag is missing
    (truncated output) runs to the next recognised tag or the end of the text, with a warning.

    Never raises.
    """
    try:
        return _parse_member(text)
    except Exception as exc:  # pragma: no cover - safety net: this function never raises
        raw = text if isinstance(text, str) else repr(text)
        return MemberParse(
            answer=raw.strip(),
            thought_process="",
            confidence=None,
            warnings=[f"internal parser error: {exc!r}"],
            raw=raw,
        )


def _parse_member(text: str) -> MemberParse:
    if not isinstance(text, str):
        raw = repr(text)
        return MemberParse(
            answer="",
            thought_process="",
            confidence=None,
            warnings=[f"response is not a string: {type(text).__name__}"],
            raw=raw,
        )
    body = _unfence(text)
    # An unclosed thought block runs to the end: truncation while thinking is common, and the
    # thinking may mention <answer> itself.
    rest, thoughts, warnings, _truncated = _split_thoughts(body, ())

    tags = _Tags(rest)
    answer_section = _find_last(tags, _ANSWER_TAGS, stops=_MEMBER_SECTION_TAGS)
    confidence_section = _find_last(tags, (_CONFIDENCE_TAG,), stops=_MEMBER_SECTION_TAGS)

    if answer_section is not None:
        answer = answer_section.content(rest)
        if not answer_section.closed:
            warnings.append(_unclosed_warning(answer_section.name))
        if not answer:
            warnings.append(f"<{answer_section.name}> is empty")
    else:
        leftover = _cut(rest, [s for s in (confidence_section,) if s is not None])
        answer = _strip_markup(leftover) or text.strip()
        if body.strip():
            warnings.append("no <answer> found; used the untagged text")

    confidence: float | None = None
    if confidence_section is not None:
        if not confidence_section.closed:
            warnings.append(_unclosed_warning(confidence_section.name))
        confidence, conf_warnings = parse_confidence_text(confidence_section.content(rest))
        warnings.extend(conf_warnings)
    else:
        outside_answer = _cut(rest, [answer_section]) if answer_section is not None else rest
        found = _keyword_confidence(outside_answer, _LINE_CONF_KEYWORD)
        if found is None and answer_section is not None:
            found = _keyword_confidence(answer, _LINE_CONF_KEYWORD)
        if found is not None:
            confidence, conf_warnings = found
            warnings.extend(conf_warnings)
            if confidence is not None:
                warnings.append("no <confidence> tag; read the confidence from the text")

    return MemberParse(
        answer=answer,
        thought_process="\n\n".join(thoughts),
        confidence=confidence,
        warnings=warnings,
        raw=text,
    )


# --------------------------------------------------------------------------- arbiter


class ArbiterParse(BaseModel):
    """What an arbiter's synthesis says, read tolerantly."""

    synthesis: str = Field(description="The synthesized answer (best text available).")
    confidence: float | None = Field(description="In [0, 1]; None when none could be read.")
    analysis: str = ""
    dissent: str = ""
    needs_iteration: bool = False
    refinement_areas: list[str] = Field(default_factory=list)
    ranking: list[int] = Field(default_factory=list)
    parse_ok: bool = Field(
        description="False when the synthesis or confidence is missing or the output was cut."
    )
    warnings: list[str] = Field(default_factory=list)
    raw: str = Field(description="The text exactly as received.")


_JSON_KEYS = {
    "synthesis": "synthesis",
    "confidence": "confidence",
    "analysis": "analysis",
    "dissent": "dissent",
    "needsiteration": "needs_iteration",
    "refinementareas": "refinement_areas",
    "ranking": "ranking",
}
_MAX_JSON_CANDIDATES = 40


def _norm_key(key: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(key).lower())


def _json_fields(obj: dict[Any, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        norm = _norm_key(key)
        if norm == "synthesisoutput" and isinstance(value, dict):
            for inner_key, inner_value in _json_fields(value).items():
                fields.setdefault(inner_key, inner_value)
        elif norm in _JSON_KEYS:
            fields[_JSON_KEYS[norm]] = value
    return fields


def _find_json(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` that has arbiter keys (fenced or after prose)."""
    decoder = json.JSONDecoder(strict=False)  # models often put raw newlines in strings
    for count, match in enumerate(re.finditer(r"\{", text)):
        if count >= _MAX_JSON_CANDIDATES:
            break
        try:
            obj, _end = decoder.raw_decode(text, match.start())
        except Exception:
            continue
        if isinstance(obj, dict):
            fields = _json_fields(obj)
            if "synthesis" in fields or "confidence" in fields:
                return fields
    return None


_JSON_PARTIAL_STRING = re.compile(r'"synthesis"\s*:\s*"((?:[^"\\]|\\.)*)', re.IGNORECASE)


def _salvage_json_synthesis(text: str) -> str | None:
    """The (possibly cut) ``"synthesis": "..."`` string of a truncated JSON answer."""
    match = _JSON_PARTIAL_STRING.search(text)
    if match is None:
        return None
    fragment = match.group(1)
    if fragment.endswith("\\") and not fragment.endswith("\\\\"):
        fragment = fragment[:-1]
    try:
        value = json.loads(f'"{fragment}"', strict=False)
    except Exception:
        return fragment.strip() or None
    return value.strip() if isinstance(value, str) and value.strip() else None


def _fallback_synthesis(tags: _Tags, raw: str) -> str:
    """The text without thinking and metadata sections and tags, else the raw text."""
    meta = _scan(tags, _ARBITER_META, _ALL_KNOWN_TAGS)
    return _strip_markup(_cut(tags.text, meta)) or raw.strip()


def _confidence_from_value(value: Any) -> tuple[float | None, list[str]]:
    if isinstance(value, bool) or value is None:
        return None, [f"confidence {value!r} is not a number"]
    if isinstance(value, int | float):
        try:
            number, warning = normalize_confidence(value)
        except ValueError as exc:
            return None, [str(exc)]
        return number, [warning] if warning else []
    return parse_confidence_text(str(value))


def _text_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list | tuple):
        return "\n".join(str(v).strip() for v in value if v is not None)
    try:
        return json.dumps(value, ensure_ascii=False)
    except Exception:
        return str(value)


def parse_arbiter_response(text: str) -> ArbiterParse:
    """Read an arbiter's synthesis.

    Accepts the XML of llm-consortium's ``arbiter_prompt.xml`` (``<synthesis_output>``
    holding ``<analysis>``, ``<dissent>``, ``<synthesis>``, ``<confidence>``,
    ``<refinement_areas>``, ``<needs_iteration>``, ``<ranking>``), in any tag case, with
    attributes and stray whitespace, optionally wrapped in a markdown code fence; or a JSON
    object with the same keys (fenced or after prose). ``<thinking>`` blocks are set aside
    first; tags inside ``<synthesis_output>`` are preferred, else the last occurrence.

    A missing synthesis, a missing or unreadable confidence, or truncated output (a section
    opened but never closed) gives ``parse_ok=False``, a warning naming the problem, and the
    best text available as ``synthesis``: the partial synthesis, else the text without the
    thinking block and tags, else the raw text. A missing ``needs_iteration`` reads as
    ``False`` and is not a failure. ``raw`` is always the input.

    Never raises.
    """
    try:
        return _parse_arbiter(text)
    except Exception as exc:  # pragma: no cover - safety net: this function never raises
        raw = text if isinstance(text, str) else repr(text)
        return ArbiterParse(
            synthesis=raw.strip(),
            confidence=None,
            parse_ok=False,
            warnings=[f"internal parser error: {exc!r}"],
            raw=raw,
        )


def _parse_arbiter(text: str) -> ArbiterParse:
    if not isinstance(text, str):
        return ArbiterParse(
            synthesis="",
            confidence=None,
            parse_ok=False,
            warnings=[f"response is not a string: {type(text).__name__}"],
            raw=repr(text),
        )
    if not text.strip():
        return ArbiterParse(
            synthesis="",
            confidence=None,
            parse_ok=False,
            warnings=["empty arbiter response", "no <synthesis> found", "no <confidence> found"],
            raw=text,
        )
    body = _unfence(text)
    # An unclosed <thinking> ends at a following <synthesis_output>, else runs to the end (the
    # thinking often mentions the other tag names, so they cannot end it).
    rest, _thoughts, warnings, truncated = _split_thoughts(body, ((_ARBITER_WRAPPER,),))
    parse_ok = not truncated

    tags = _Tags(rest)
    wrapper = _find_last(tags, (_ARBITER_WRAPPER,))
    sections: dict[str, _Section] = {}
    if wrapper is not None:
        if not wrapper.closed:
            parse_ok = False
            warnings.append(_unclosed_warning(_ARBITER_WRAPPER))
        for name in _ARBITER_FIELDS:
            found = _find_last(
                tags,
                (name,),
                lo=wrapper.content_start,
                hi=wrapper.content_end,
                stops=_ARBITER_SECTION_TAGS,
            )
            if found is None:  # fall back to a section written outside the wrapper
                found = _find_last(tags, (name,), lo=wrapper.end, stops=_ARBITER_SECTION_TAGS)
            if found is None:
                found = _find_last(tags, (name,), hi=wrapper.start, stops=_ARBITER_SECTION_TAGS)
            if found is not None:
                sections[name] = found
    else:
        for name in _ARBITER_FIELDS:
            found = _find_last(tags, (name,), stops=_ARBITER_SECTION_TAGS)
            if found is not None:
                sections[name] = found

    if wrapper is None and not sections:
        fields = _find_json(rest)
        if fields is not None:
            return _arbiter_from_json(fields, text, rest, warnings, parse_ok)

    for name in _ARBITER_FIELDS:
        section = sections.get(name)
        if section is not None and not section.closed:
            parse_ok = False
            warnings.append(_unclosed_warning(name))

    def content(name: str) -> str | None:
        section = sections.get(name)
        return None if section is None else section.content(rest)

    synthesis = content("synthesis")
    if synthesis is None:
        parse_ok = False
        warnings.append("no <synthesis> found")
        salvaged = _salvage_json_synthesis(rest)
        if salvaged is not None:
            warnings.append('the JSON answer could not be read; used its partial "synthesis"')
            synthesis = salvaged
        else:
            synthesis = _fallback_synthesis(tags, text)
    elif not synthesis:
        parse_ok = False
        warnings.append("<synthesis> is empty")
        synthesis = _fallback_synthesis(tags, text)

    confidence: float | None = None
    confidence_text = content("confidence")
    if confidence_text is None:
        parse_ok = False
        warnings.append("no <confidence> found")
    else:
        confidence, conf_warnings = parse_confidence_text(confidence_text)
        warnings.extend(conf_warnings)
        if confidence is None:
            parse_ok = False
            warnings.append(
                f"could not read a confidence from <confidence>: {_snip(confidence_text)}"
            )

    needs_iteration = False
    needs_text = content("needs_iteration")
    if needs_text is not None:
        parsed_bool = _parse_bool(needs_text)
        if parsed_bool is None:
            warnings.append(f"could not read <needs_iteration> {_snip(needs_text)}; using false")
        else:
            needs_iteration = parsed_bool

    areas_text = content("refinement_areas")
    ranking_section = sections.get("ranking")
    ranking = (
        _ranking_from_body(rest[ranking_section.content_start : ranking_section.content_end])
        if ranking_section is not None
        else []
    )
    return ArbiterParse(
        synthesis=synthesis,
        confidence=confidence,
        analysis=content("analysis") or "",
        dissent=content("dissent") or "",
        needs_iteration=needs_iteration,
        refinement_areas=_parse_areas(areas_text) if areas_text else [],
        ranking=ranking,
        parse_ok=parse_ok,
        warnings=warnings,
        raw=text,
    )


def _arbiter_from_json(
    fields: dict[str, Any], text: str, rest: str, warnings: list[str], parse_ok: bool
) -> ArbiterParse:
    synthesis = _text_value(fields.get("synthesis"))
    if "synthesis" not in fields:
        parse_ok = False
        warnings.append('no "synthesis" key found in the JSON answer')
    elif not synthesis:
        parse_ok = False
        warnings.append('"synthesis" is empty in the JSON answer')
    if not synthesis:
        synthesis = rest.strip() or text.strip()

    confidence: float | None = None
    if "confidence" not in fields:
        parse_ok = False
        warnings.append('no "confidence" key found in the JSON answer')
    else:
        confidence, conf_warnings = _confidence_from_value(fields["confidence"])
        warnings.extend(conf_warnings)
        if confidence is None:
            parse_ok = False
            warnings.append(f"could not read a confidence from {_snip(repr(fields['confidence']))}")

    needs_iteration = False
    if "needs_iteration" in fields and fields["needs_iteration"] is not None:
        parsed_bool = _parse_bool(fields["needs_iteration"])
        if parsed_bool is None:
            warnings.append(
                f"could not read needs_iteration {_snip(repr(fields['needs_iteration']))}; "
                "using false"
            )
        else:
            needs_iteration = parsed_bool

    return ArbiterParse(
        synthesis=synthesis,
        confidence=confidence,
        analysis=_text_value(fields.get("analysis")),
        dissent=_text_value(fields.get("dissent")),
        needs_iteration=needs_iteration,
        refinement_areas=_areas_from_json(fields.get("refinement_areas")),
        ranking=_ranking_from_json(fields.get("ranking")),
        parse_ok=parse_ok,
        warnings=warnings,
        raw=text,
    )
