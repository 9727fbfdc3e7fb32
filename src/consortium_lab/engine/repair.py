"""What the engine does with output it cannot read: the arbiter's one reformat request, and
keeping a member's answer that a limit cut short."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from consortium_lab.gateway.calls import CallOutcome, CallRequest
from consortium_lab.gateway.core import Gateway
from consortium_lab.gateway.failures import CallFailed
from consortium_lab.gateway.types import Usage
from consortium_lab.prompts import templates as prompts
from consortium_lab.prompts.parsing import ArbiterParse, parse_arbiter_response

__all__ = ["REPAIR_SEPARATOR", "UNREADABLE_IN_A_ROW", "Repaired", "repair_synthesis"]

logger = logging.getLogger(__name__)

UNREADABLE_IN_A_ROW = 2
"""After this many syntheses in a row that could not be read, the run stops iterating: with no
confidence it can never converge, and each further iteration costs a full round."""

REPAIR_SEPARATOR = "\n\n--- reformatted on request ---\n\n"
"""Between the arbiter's first reply and its reformatted one in a repaired synthesis's
``raw``: both are kept."""


@dataclass
class Repaired:
    """A repair attempt: the parse to use, the raw text behind it and the usage to add."""

    parsed: ArbiterParse
    raw: str
    usage: Usage
    cost: float | None


async def repair_synthesis(
    gateway: Gateway, request: CallRequest, first: CallOutcome, parsed: ArbiterParse
) -> Repaired:
    """Ask the arbiter once to restate ``first`` in the synthesis format.

    The reformatted reply is used when it can be read; otherwise (or when the call fails) the
    first parse stands, with a warning saying the repair did not help, and ``raw`` is the first
    reply. A repaired synthesis keeps both replies in ``raw``.
    """
    again = CallRequest(
        model=request.model,
        prompt=prompts.reformat_prompt(first.text, parsed.warnings),
        options=request.options,
        limits=request.limits,
        stage=request.stage,
        instance=request.instance,
        cache=request.cache,
        user=request.user,
        sample=request.sample,
    )
    logger.info(
        "arbiter %s: output could not be read (%s); asking it to reformat",
        request.model,
        "; ".join(parsed.warnings),
    )
    try:
        outcome = await gateway.call(again)
    except CallFailed as exc:
        kept = kept_cut_off(exc, request.model)
        if kept is None:
            logger.info("arbiter %s: the reformat request failed: %s", request.model, exc.message)
            note = f"reformat request failed: {exc.message}"
            return Repaired(_noted(parsed, note), first.text, first.usage, first.cost)
        outcome = kept  # cut by our limits: the tags it wrote so far may be enough
    usage = Usage(
        input_tokens=_add(first.usage.input_tokens, outcome.usage.input_tokens),
        output_tokens=_add(first.usage.output_tokens, outcome.usage.output_tokens),
    )
    cost = _add(first.cost, outcome.cost)
    raw = first.text + REPAIR_SEPARATOR + outcome.text
    second = parse_arbiter_response(outcome.text)
    if second.parse_ok:
        logger.info("arbiter %s: the reformatted output was read", request.model)
        note = "the first output could not be read (" + "; ".join(parsed.warnings) + ")"
        return Repaired(_noted(second, f"repaired: {note}"), raw, usage, cost)
    logger.info("arbiter %s: the reformatted output could not be read either", request.model)
    # The first reply is what is shown; the second one is in llm's log like every call.
    return Repaired(_noted(parsed, "reformat request did not help"), first.text, usage, cost)


def _noted(parsed: ArbiterParse, note: str) -> ArbiterParse:
    return parsed.model_copy(update={"warnings": [*parsed.warnings, note]})


def _add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    return a if b is None else a + b


def kept_cut_off(exc: CallFailed, model: str) -> CallOutcome | None:
    """A call our limits cut off (tokens or time), as an outcome holding the text it wrote so
    far, marked ``truncated``; ``None`` for any other failure, or when nothing was written."""
    if exc.kind != "cut_off" or not exc.partial_text.strip():
        return None
    return CallOutcome(
        text=exc.partial_text,
        reasoning="",
        usage=Usage(),
        latency_ms=exc.latency_ms or 0.0,
        first_token_ms=None,
        served_by=exc.served_by or model,
        attempts=exc.attempts,
        truncated=True,
    )
