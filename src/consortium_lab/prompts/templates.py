"""Prompt templates and the builders that fill them.

The templates are the XML files that ship inside the ``llm_consortium`` package, read as plain
files from where that package is installed, so an upgrade of llm-consortium brings its new
wording. The package is located (``importlib.util.find_spec``), never imported: importing it
pulls in scikit-learn, about 85 MB of memory in every chat kernel. Their
placeholders (see ``docs/prompts.md``):

=====================  ==================================================================
template               placeholders
=====================  ==================================================================
system_prompt.xml      none: the member system prompt (thinking / answer / confidence)
arbiter_prompt.xml     user_instructions, original_prompt, formatted_responses,
                       formatted_history
iteration_prompt.xml   user_instructions, original_prompt, previous_synthesis,
                       refinement_areas
rank_prompt.xml        original_prompt, formatted_responses
=====================  ==================================================================

Only the named placeholders are substituted, so braces in a template or in user text are never
interpreted. Everything here is pure: no I/O beyond reading the packaged templates.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TEMPLATE_PACKAGE = "llm_consortium"
TEMPLATES = ("system_prompt.xml", "arbiter_prompt.xml", "iteration_prompt.xml", "rank_prompt.xml")
ARBITER_BLOCK_END = "</arbiter_prompt>"
"""Closes the data block of ``arbiter_prompt.xml``; the threshold rule goes right after it,
before the steps and the output format."""


@functools.cache
def template(name: str) -> str:
    """The text of one of llm-consortium's packaged templates."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; expected one of {', '.join(TEMPLATES)}")
    spec = importlib.util.find_spec(TEMPLATE_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise FileNotFoundError(
            f"prompt template {name!r}: the {TEMPLATE_PACKAGE} package is not installed"
        )
    return (Path(folders[0]) / name).read_text(encoding="utf-8")


def fill(text: str, values: Mapping[str, str]) -> str:
    """Substitute ``{name}`` for each given name, and nothing else."""
    if not values:
        return text
    pattern = re.compile(r"\{(" + "|".join(re.escape(k) for k in values) + r")\}")
    return pattern.sub(lambda m: values[m.group(1)], text)


def wrap_user_prompt(prompt: str) -> str:
    """The user's prompt as members see it on the first iteration."""
    return f"<prompt><instruction>{prompt}</instruction></prompt>"


def member_system_prompt(user_instructions: str | None, member_extra: str | None) -> str:
    """System prompt of a member: the consortium template, then the user's instructions and the
    member's own system prompt (each only when set)."""
    parts = [template("system_prompt.xml").strip()]
    if user_instructions:
        parts.append(f"<user_instructions>{user_instructions}</user_instructions>")
    if member_extra:
        parts.append(member_extra)
    return "\n\n".join(parts)


def iteration_prompt(
    original_prompt: str,
    previous_synthesis: str,
    refinement_areas: Sequence[str],
    user_instructions: str | None,
) -> str:
    """The member prompt from the second iteration on."""
    areas = "\n        ".join(f"<area>{a}</area>" for a in refinement_areas) or "<area>none</area>"
    return fill(
        template("iteration_prompt.xml"),
        {
            "user_instructions": user_instructions or "",
            "original_prompt": original_prompt,
            "previous_synthesis": previous_synthesis,
            "refinement_areas": areas,
        },
    )


@dataclass(frozen=True)
class Candidate:
    """One member answer as shown to the arbiter or to peer reviewers."""

    id: int
    model: str
    answer: str
    confidence: float | None


def format_responses(candidates: Sequence[Candidate], *, anonymize: bool = False) -> str:
    """Member answers as XML blocks; ``anonymize`` hides which model wrote each (council)."""
    blocks = []
    for c in candidates:
        lines = [f'<model_response id="{c.id}">']
        if not anonymize:
            lines.append(f"<model>{c.model}</model>")
        if c.confidence is not None:
            lines.append(f"<confidence>{c.confidence:.2f}</confidence>")
        lines.append(f"<answer>\n{c.answer}\n</answer>")
        lines.append("</model_response>")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def format_history(syntheses: Sequence[tuple[int, str]], peer_ranking: Sequence[int] = ()) -> str:
    """Earlier iterations' syntheses, and (council) the aggregate peer ranking, best first."""
    lines = [f"Iteration {n} synthesis:\n{text}" for n, text in syntheses]
    if peer_ranking:
        order = ", ".join(str(i) for i in peer_ranking)
        lines.append(f"Aggregate peer ranking of this iteration's responses, best first: {order}")
    return "\n\n".join(lines)


def arbiter_prompt(
    original_prompt: str,
    candidates: Sequence[Candidate],
    history: Sequence[tuple[int, str]],
    user_instructions: str | None,
    *,
    peer_ranking: Sequence[int] = (),
    threshold: float | None = None,
) -> str:
    """The arbiter's (or council chairman's) synthesis prompt. With ``threshold`` (the
    consortium's confidence threshold) a ``<confidence_threshold>`` tag and the rule that
    goes with it follow the ``</arbiter_prompt>`` block, so the arbiter's
    ``needs_iteration`` and its words can follow the rule in effect."""
    text = fill(
        template("arbiter_prompt.xml"),
        {
            "user_instructions": user_instructions or "",
            "original_prompt": original_prompt,
            "formatted_responses": format_responses(candidates),
            "formatted_history": format_history(history, peer_ranking),
        },
    )
    if threshold is None:
        return text
    # Not at the end, and with its number only inside the tag: a small model (SmolLM2-135M in
    # bench_quality.py) answers with the last sentence it read, so a closing "accepted when
    # its confidence is at least 0.8" line became its synthesis, and 0.8 the scored answer.
    rule = (
        f"<confidence_threshold>{threshold:g}</confidence_threshold>\n"
        "Rule for needs_iteration: true when your confidence is below the "
        "confidence_threshold above, otherwise false."
    )
    head, closing, rest = text.partition(ARBITER_BLOCK_END)
    if not closing:  # a template without the data block: the rule goes first
        return f"{rule}\n\n{text}"
    return f"{head}{closing}\n\n{rule}\n{rest}"


def rank_prompt(
    original_prompt: str, candidates: Sequence[Candidate], *, anonymize: bool = False
) -> str:
    """The ranking prompt: rank judging by the arbiter, or a council member's peer review."""
    return fill(
        template("rank_prompt.xml"),
        {
            "original_prompt": original_prompt,
            "formatted_responses": format_responses(candidates, anonymize=anonymize),
        },
    )


REFORMAT_PROMPT = """Your previous reply could not be read: {problems}.
Rewrite it in exactly this format and nothing else. Keep its content; state a confidence
between 0 and 1.

<synthesis_output>
<synthesis>the answer</synthesis>
<confidence>0.0 to 1.0</confidence>
<analysis>one or two sentences on how the answers agree</analysis>
<dissent>where they disagree, or none</dissent>
<needs_iteration>false</needs_iteration>
<refinement_areas></refinement_areas>
</synthesis_output>

Your previous reply:
<previous_reply>
{raw}
</previous_reply>"""
"""The one repair request for an arbiter output that could not be read: short (a small
model's context is short too) and naming what was missing."""


def reformat_prompt(raw: str, problems: Sequence[str], max_chars: int = 4000) -> str:
    """Ask the arbiter to restate ``raw`` in the synthesis format (its first ``max_chars``
    characters: a rambling output must not fill a small model's context)."""
    listed = "; ".join(problems) if problems else "the required tags were missing"
    return REFORMAT_PROMPT.format(problems=listed, raw=raw.strip()[:max_chars])
