"""The ``judge`` scorer: a model grades an answer against the reference.

Its prompt is :data:`RUBRIC` (below, documented in ``docs/eval.md``). The judge is called
through the gateway with ``cache="use"``, so the same question, reference and answer are
graded once and the verdict replayed after (the gateway cache); each verdict is also kept in
the evaluation's results (``verdict``) and in llm's own log like every call.
"""

from __future__ import annotations

import re
from typing import Any

from consortium_lab.eval.dataset import Item
from consortium_lab.eval.scorers import Score, normalise
from consortium_lab.gateway.calls import CallRequest

__all__ = ["RUBRIC", "JudgeScorer", "parse_verdict"]

RUBRIC = """You grade an answer to a question against the reference answer.

<question>{question}</question>
<reference>{reference}</reference>
<answer>{answer}</answer>

The answer is CORRECT when it states the same final result as the reference (same number,
same choice, same fact), whatever its wording, length or reasoning. It is INCORRECT when its
final result differs, is missing, or hedges between several results.

Reply with one short sentence of reason, then <verdict>CORRECT</verdict> or
<verdict>INCORRECT</verdict>."""

_VERDICT = re.compile(r"<verdict>\s*(CORRECT|INCORRECT)\s*</verdict>", re.IGNORECASE)


def parse_verdict(text: str) -> bool | None:
    """True/False from the judge's ``<verdict>`` tag (the last one), None if absent."""
    found = _VERDICT.findall(text)
    return found[-1].upper() == "CORRECT" if found else None


class JudgeScorer:
    """Grades with ``model`` and :data:`RUBRIC`; an unreadable verdict counts as wrong and
    the judge's text is kept so it can be read."""

    name = "judge"

    def __init__(self, model: str, *, gateway: Any = None) -> None:
        self.model = model
        self._gateway = gateway

    @property
    def gateway(self) -> Any:
        if self._gateway is None:
            from consortium_lab.gateway.core import Gateway

            self._gateway = Gateway()
        return self._gateway

    def extract(self, answer: str) -> str | None:
        return normalise(answer)

    async def score(self, answer: str, item: Item) -> Score:
        prompt = RUBRIC.format(question=item.prompt, reference=item.answer, answer=answer)
        outcome = await self.gateway.call(
            CallRequest(model=self.model, prompt=prompt, stage="arbiter", cache="use")
        )
        verdict = parse_verdict(outcome.text)
        return Score(bool(verdict), self.extract(answer), verdict=outcome.text.strip())
