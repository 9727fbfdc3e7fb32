"""Offline demo models for ``llm``: no key, no network, deterministic, streamed at a human pace.

Registered (sync and async) as ``demo-analyst`` (structured, cautious), ``demo-optimist``
(confident, enthusiastic), ``demo-skeptic`` (caveats, lower confidence) and ``demo-arbiter``.
Any of them answers a ``<rank_prompt>`` with a ranking by support, an ``<arbiter_prompt>`` with
an honest extractive synthesis (:func:`synthesize`), an ``<iteration_prompt>`` by carrying over
the previous synthesis and taking up the refinement areas (so iterations converge), and any other
prompt with a member answer built from the question's key words, its style and a small shared
pool of generic points, seeded by a SHA-256 of model id and prompt (history included). Nothing is
a real answer, and every reply's thinking says so. ``CONSORTIUM_LAB_DEMO_DELAY``: seconds per
streamed chunk of 1-3 words (default 0.025; ``0`` for instant).

A sentence is *supported* by another response when one of that response's sentences has a
content-word set (lower-cased; stop words and words under 3 letters dropped) with a Jaccard
overlap >= ``SUPPORT_THRESHOLD``; a response's support is the mean over its sentences.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
import os
import random
import re
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import NamedTuple

import llm
from llm import AsyncConversation, AsyncResponse, Conversation, Prompt, Response

DELAY_ENV = "CONSORTIUM_LAB_DEMO_DELAY"
DEFAULT_DELAY = 0.025
SUPPORT_THRESHOLD = 0.5
ITERATE_BELOW = 0.75
CLAIM_PREFIX = "Unshared claim: "

_STOP_WORDS = """
    about above after again all also and any are because been before being below between both but
    can could did does doing down during each few for from further had has have having her here
    hers him his how into its itself just more most nor not now off once only other our ours out
    over own same she should some such than that the their theirs them then there these they this
    those through too under until very was were what when where which while who whom why will with
    would you your yours give tell explain please"""
_STOP = frozenset(_STOP_WORDS.split())
_MARKUP = re.compile(r"<(thinking|confidence)>.*?</\1>|<[^<>]*>", re.DOTALL)  # inside answers


class _Style(NamedTuple):
    description: str
    confidence: float
    openers: tuple[str, ...]
    closers: tuple[str, ...]


_STYLES = {
    "demo-analyst": _Style("structured, cautious", 0.72, (
        "Taking {topic} step by step, first separate what is known from what is assumed.",
        "A structured look at {topic} starts with the scope and the criteria for a good answer.",
    ), (
        "On balance, comparing the options against explicit criteria is the safest way on.",
        "A short checklist of assumptions would make any conclusion easier to verify.",
    )),
    "demo-optimist": _Style("confident, enthusiastic", 0.88, (
        "Great question: {topic} has a lot of upside and plenty of room for good ideas!",
        "There is real reason to be excited about {topic}, and the outlook is bright.",
    ), (
        "With a clear plan, this can absolutely work out well.",
        "The momentum is there, so moving ahead with confidence makes sense.",
    )),
    "demo-skeptic": _Style("points out caveats, lower confidence", 0.55, (
        "Any firm claim about {topic} deserves caution until its assumptions are tested.",
        "Before accepting a neat answer on {topic}, ask what could go wrong.",
    ), (
        "Until those caveats are checked, treat every conclusion here as provisional.",
        "Missing data is the biggest risk, so the honest answer is that it depends.",
    )),
    "demo-arbiter": _Style("balanced; synthesizes member answers", 0.7, (
        "A balanced view of {topic} weighs several perspectives before settling on one.",
    ), ("The points that most perspectives share are the safest place to start.",)),
}  # fmt: skip
_FACTS = (
    "Any answer about {topic} depends heavily on context and on the assumptions behind it.",
    "The most useful first step with {topic} is to define the key terms precisely.",
    "Claims about {topic} should be checked against at least one primary source.",
    "Trade-offs matter: what helps in one setting of {topic} can hurt in another.",
    "A small concrete example usually clarifies {topic} better than an abstract summary.",
    "Specialists often disagree on the finer points of {topic}, so exact figures deserve caution.",
    "Short-term and long-term effects of {topic} are often quite different.",
    "Costs, risks and benefits of {topic} are best weighed together rather than one at a time.",
)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _content(text: str) -> frozenset[str]:
    return frozenset(w for w in _words(text) if len(w) > 2 and w not in _STOP)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip(" -\t")]


def _tag(text: str, name: str) -> str | None:
    match = re.search(rf"<{name}>(.*?)</{name}>", text, re.DOTALL)
    return match.group(1).strip() if match else None


def _rng(*parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _question(text: str) -> str:
    return _tag(text, "instruction") or text.strip()


def _topic(text: str) -> str:
    """The question's three longest content words, in order; adjacent ones form a phrase."""
    tokens = re.findall(r"[A-Za-z0-9]+", text)
    first = {t.lower(): i for i, t in reversed(list(enumerate(tokens)))}
    content = sorted(i for w, i in first.items() if len(w) > 2 and w not in _STOP)
    picked = sorted(sorted(content, key=lambda i: -len(tokens[i]))[:3])
    runs: list[list[str]] = []
    for n, i in enumerate(picked):
        if n and picked[n - 1] == i - 1:
            runs[-1].append(tokens[i])
        else:
            runs.append([tokens[i]])
    phrases = [" ".join(run) for run in runs] or ["this question"]
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def _take_up(area: str) -> str:
    """A member's sentence on a refinement area: adopt a dissenting claim, hedged."""
    if area.startswith(CLAIM_PREFIX):
        claim = area.removeprefix(CLAIM_PREFIX).rstrip(".!? ")
        return f"Worth keeping in mind, with some uncertainty: {claim[:1].lower()}{claim[1:]}."
    return f'Regarding "{area.rstrip(".!? ")}", this remains open and is stated here as uncertain.'


def _member_reply(model_id: str, text: str, history: list[str]) -> str:
    """A member answer; on an ``<iteration_prompt>``, a refinement of the previous synthesis."""
    style = _STYLES.get(model_id, _STYLES["demo-arbiter"])
    own = _rng(model_id, text, *history)
    confidence = style.confidence + (own.random() - 0.5) * 0.06
    if "<iteration_prompt>" in text:
        topic = _topic(_question(_tag(text, "original_prompt") or ""))
        block = _tag(text, "refinement_areas") or ""
        areas = [a.strip() for a in re.findall(r"<area>(.*?)</area>", block, re.DOTALL)]
        areas = [a for a in areas if a and a.lower() != "none"][:2]
        sentences = [own.choice(style.openers).replace("{topic}", topic)]
        sentences += _sentences(_tag(text, "previous_synthesis") or "")[:6]
        for extra in [*map(_take_up, areas), own.choice(style.closers)]:
            if all(_jaccard(_content(extra), _content(s)) < SUPPORT_THRESHOLD for s in sentences):
                sentences.append(extra)  # skip points the answer already makes
        confidence += 0.1
        note = f"refining the previous synthesis and taking up {len(areas)} refinement area(s)"
    else:
        topic = _topic(_question(text))
        shared = _rng("shared", text, *history).choice(_FACTS)
        own_fact = own.choice([f for f in _FACTS if f != shared])
        picks = [own.choice(style.openers), shared, own_fact, own.choice(style.closers)]
        sentences = [s.replace("{topic}", topic) for s in picks]
        if history:
            earlier = _topic(_question(history[-1]))
            sentences.insert(0, f"This follows on from the earlier question about {earlier}.")
        note = f"key words: {topic}"
    return (
        f"<thinking>\nOffline demo model {model_id} ({style.description}): no real model was "
        f"called and this is not a real answer. Working from fixed templates; {note}.\n"
        f"</thinking>\n<answer>\n{' '.join(sentences)}\n</answer>\n"
        f"<confidence>{min(confidence, 0.95):.2f}</confidence>"
    )


class _Point(NamedTuple):
    response: int  # index into _Analysis.ids
    text: str
    words: frozenset[str]
    support: int  # how many other responses share this point


class _Analysis(NamedTuple):
    ids: list[str]
    models: list[str]
    points: list[_Point]
    support: list[float]
    ranking: list[int]  # response indexes, best first
    agreement: float


def _analyse(text: str) -> _Analysis:
    """Parse the ``<model_response>`` blocks and measure how much the responses share."""
    blocks = re.findall(r'<model_response id="([^"]*)">(.*?)</model_response>', text, re.DOTALL)
    answers = [_MARKUP.sub(" ", _tag(body, "answer") or body) for _, body in blocks]
    split = [[(s, _content(s)) for s in _sentences(answer)] for answer in answers]
    points = [
        _Point(i, s, w, sum(
            any(_jaccard(w, w2) >= SUPPORT_THRESHOLD for _, w2 in other)
            for j, other in enumerate(split) if j != i
        ))
        for i, sentences in enumerate(split) for s, w in sentences
    ]  # fmt: skip
    support = []
    for i in range(len(blocks)):
        mine = [p.support for p in points if p.response == i]
        support.append(sum(mine) / len(mine) if mine else 0.0)
    word_sets = [_content(a) for a in answers]
    pairs = [_jaccard(a, b) for a, b in itertools.combinations(word_sets, 2)]
    ranking = sorted(range(len(blocks)), key=lambda i: (-support[i], i))
    models = [_tag(body, "model") or f"Response {i}" for i, body in blocks]
    agreement = sum(pairs) / len(pairs) if pairs else 0.5
    return _Analysis([i for i, _ in blocks], models, points, support, ranking, agreement)


def _ranking_xml(a: _Analysis) -> str:
    ranks = (f'<rank position="{n}">{a.ids[i]}</rank>' for n, i in enumerate(a.ranking, 1))
    return "<ranking>\n" + "\n".join(ranks) + "\n</ranking>"


def confidence_from_agreement(agreement: float) -> float:
    """Arbiter confidence: ``round(min(0.95, max(0.3, 0.3 + 0.8 * agreement)), 2)``.

    ``agreement`` is the mean, over all pairs of member answers, of the Jaccard overlap of their
    content-word sets (0.5 when there are fewer than two answers). Identical answers give 0.95,
    disjoint ones 0.30; below ``ITERATE_BELOW`` (0.75), i.e. agreement under 0.5625, the arbiter
    asks for another iteration.
    """
    return round(min(0.95, max(0.3, 0.3 + 0.8 * agreement)), 2)


def _threshold(text: str) -> float:
    """The consortium's threshold named in an arbiter prompt, else ``ITERATE_BELOW``."""
    found = re.search(r"<confidence_threshold>\s*([0-9.]+)\s*</confidence_threshold>", text)
    with contextlib.suppress(ValueError):
        if found is not None:
            return float(found.group(1))
    return ITERATE_BELOW


def synthesize(text: str) -> str:
    """The demo arbiter's reply to an ``<arbiter_prompt>``: an honest extractive synthesis.

    Sentences that other members support are kept, most supported first, skipping
    near-duplicates (Jaccard >= ``SUPPORT_THRESHOLD``), at most six; when nothing is shared the
    best-ranked response is used whole. Distinct unsupported sentences become ``<dissent>`` and
    (up to three) refinement areas. ``<confidence>`` is :func:`confidence_from_agreement`;
    ``<needs_iteration>`` is true below the prompt's ``<confidence_threshold>`` (else
    ``ITERATE_BELOW``); ``<ranking>`` orders by support.
    """
    a = _analyse(text)
    topic = _topic(_question(_tag(text, "original_prompt") or ""))
    chosen: list[_Point] = []
    for p in sorted((p for p in a.points if p.support), key=lambda p: -p.support):
        if len(chosen) < 6 and all(_jaccard(p.words, c.words) < SUPPORT_THRESHOLD for c in chosen):
            chosen.append(p)
    if not chosen and a.ids:
        chosen = [p for p in a.points if p.response == a.ranking[0]]
    dissent: list[_Point] = []
    for p in a.points:
        distinct = all(_jaccard(p.words, q.words) < SUPPORT_THRESHOLD for q in chosen + dissent)
        if not p.support and distinct:
            dissent.append(p)
    confidence = confidence_from_agreement(a.agreement)
    threshold = _threshold(text)
    needs = confidence < threshold
    areas = [CLAIM_PREFIX + p.text.rstrip(".!? ") for p in dissent[:3]]
    areas = areas or [f"Add concrete, verifiable detail about {topic}"]
    dissent_lines = [f"- {a.models[p.response]}: {p.text}" for p in dissent]
    verdict = (
        f"Confidence is below the threshold of {threshold:.0%}, so another iteration is "
        "recommended."
        if needs
        else f"Confidence reaches the threshold of {threshold:.0%}, so no further iteration is "
        "needed."
    )
    shared = sum(1 for p in a.points if p.support)
    area_lines = "\n".join(f"<area>{x}</area>" for x in areas)
    return f"""<thinking>
Offline demo arbiter: no real model was called. I split each member answer into sentences and \
counted how many other members share each sentence's content words (Jaccard >= \
{SUPPORT_THRESHOLD}); the mean pairwise agreement between answers is {a.agreement:.2f}.
</thinking>

<synthesis_output>
<first_impression>{len(a.ids)} responses about {topic}; {shared} of their {len(a.points)} \
sentences are echoed by at least one other response.</first_impression>
<analysis>Mean pairwise content-word Jaccard overlap is {a.agreement:.2f}, so confidence = \
clip(0.3 + 0.8 x {a.agreement:.2f}, 0.3, 0.95) = {confidence:.2f}. The synthesis keeps the \
{len(chosen)} best-supported distinct sentence(s). {verdict}</analysis>
<dissent>
{chr(10).join(dissent_lines) or "None: every point was shared by another response."}
</dissent>
<synthesis>
{" ".join(p.text for p in chosen) or "No member answers were found in the prompt."}
</synthesis>
<confidence>{confidence:.2f}</confidence>
<refinement_areas>
{area_lines}
</refinement_areas>
<needs_iteration>{str(needs).lower()}</needs_iteration>
{_ranking_xml(a)}
</synthesis_output>"""


def _rank_reply(text: str) -> str:
    a = _analyse(text)
    scores = ", ".join(f"{a.ids[i]}: {a.support[i]:.2f}" for i in a.ranking) or "none found"
    return (
        "Reasoning:\nOffline demo ranking (no real model was called): responses are ordered by "
        f"how many other responses share their points (mean per sentence: {scores}).\n\n"
        + _ranking_xml(a)
    )


def _message_texts(prompt: Prompt) -> list[tuple[str, str]]:
    return [
        (m.role, "\n".join(getattr(p, "text", None) or "" for p in m.parts))
        for m in prompt.messages
    ]


def _reply(model_id: str, prompt: Prompt) -> str:
    """The reply of demo model ``model_id`` to ``prompt``, by kind of prompt."""
    users = [t for role, t in _message_texts(prompt) if role == "user"]
    text = prompt.prompt or (users[-1] if users else "")
    if text.lstrip().startswith("<prompt>"):
        return _member_reply(model_id, text, users[:-1])
    if "<rank_prompt>" in text:
        return _rank_reply(text)
    if "<arbiter_prompt>" in text:
        return synthesize(text)
    return _member_reply(model_id, text, users[:-1])


def _delay() -> float:
    try:
        value = float(os.environ.get(DELAY_ENV) or DEFAULT_DELAY)
    except ValueError:
        return DEFAULT_DELAY
    return max(0.0, value) if math.isfinite(value) else DEFAULT_DELAY


def _chunks(model_id: str, prompt: Prompt, response: Response | AsyncResponse) -> list[str]:
    """The reply in chunks of 1-3 words (whitespace kept); records word counts as usage."""
    text = _reply(model_id, prompt)
    words_in = sum(len(t.split()) for _, t in _message_texts(prompt)) or len(prompt.prompt.split())
    response.set_usage(input=words_in, output=len(text.split()))
    tokens = re.findall(r"\s*\S+\s*", text)
    rng = _rng("chunks", model_id, text)
    chunks = []
    while tokens:
        size = rng.randint(1, 3)
        chunks.append("".join(tokens[:size]))
        del tokens[:size]
    return chunks


class _DemoBase:
    can_stream = True
    needs_key: str | None = None

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def __str__(self) -> str:
        style = _STYLES[self.model_id].description
        return f"Offline demo model: {self.model_id} ({style}; no key, no network)"


class DemoModel(_DemoBase, llm.Model):
    """An offline demo model (sync); see the module docstring."""

    def execute(
        self, prompt: Prompt, stream: bool, response: Response, conversation: Conversation | None
    ) -> Iterator[str]:
        """Yield the deterministic reply, one chunk per ``CONSORTIUM_LAB_DEMO_DELAY`` seconds."""
        chunks, delay = _chunks(self.model_id, prompt, response), _delay()
        if not stream:
            time.sleep(delay * len(chunks))
            chunks, delay = ["".join(chunks)], 0.0
        for chunk in chunks:
            if delay:
                time.sleep(delay)
            yield chunk


class DemoAsyncModel(_DemoBase, llm.AsyncModel):
    """An offline demo model (async); see the module docstring."""

    async def execute(
        self,
        prompt: Prompt,
        stream: bool,
        response: AsyncResponse,
        conversation: AsyncConversation | None,
    ) -> AsyncGenerator[str, None]:
        """Yield the deterministic reply, one chunk per ``CONSORTIUM_LAB_DEMO_DELAY`` seconds."""
        chunks, delay = _chunks(self.model_id, prompt, response), _delay()
        if not stream:
            await asyncio.sleep(delay * len(chunks))
            chunks, delay = ["".join(chunks)], 0.0
        for chunk in chunks:
            if delay:
                await asyncio.sleep(delay)
            yield chunk


MODEL_IDS = tuple(_STYLES)


@llm.hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Register every demo model, sync and async, with ``llm``."""
    for model_id in MODEL_IDS:
        register(DemoModel(model_id), DemoAsyncModel(model_id))
