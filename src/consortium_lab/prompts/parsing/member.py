"""Reading a member's answer: thoughts, answer and confidence, never raising."""

from __future__ import annotations

from pydantic import BaseModel, Field

from consortium_lab.prompts.parsing.scan import (
    _ANSWER_TAGS,
    _CONFIDENCE_TAG,
    _LINE_CONF_KEYWORD,
    _MEMBER_SECTION_TAGS,
    _cut,
    _find_last,
    _keyword_confidence,
    _split_thoughts,
    _strip_markup,
    _Tags,
    _unclosed_warning,
    _unfence,
    parse_confidence_text,
)

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
