"""Reading an arbiter's synthesis: the tagged or JSON fields, with salvage, never raising."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field

from consortium_lab.config.rules import normalize_confidence
from consortium_lab.prompts.parsing.ranking import (
    _ranking_from_body,
    _ranking_from_json,
)
from consortium_lab.prompts.parsing.scan import (
    _ALL_KNOWN_TAGS,
    _ARBITER_FIELDS,
    _ARBITER_META,
    _ARBITER_SECTION_TAGS,
    _ARBITER_WRAPPER,
    _areas_from_json,
    _cut,
    _find_last,
    _parse_areas,
    _parse_bool,
    _scan,
    _Section,
    _snip,
    _split_thoughts,
    _strip_markup,
    _Tags,
    _unclosed_warning,
    _unfence,
    parse_confidence_text,
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
