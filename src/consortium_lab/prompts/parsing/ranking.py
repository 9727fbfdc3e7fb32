"""Reading a ranking (``<rank>`` tags, numbered lists, JSON) out of free text."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from consortium_lab.prompts.parsing.scan import (
    _find_last,
    _split_thoughts,
    _strip_markup,
    _Tags,
    _unfence,
)

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
