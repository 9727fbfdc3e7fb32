"""``RunResult``: a run as data, built by folding its event stream.

The same fold serves a live run (the engine feeds it each event), a run read back from the run
log (:func:`consortium_lab.runs.get`) and an interrupted run (the fold of what was recorded).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from consortium_lab.config.consortium import ARBITERLESS_MODES
from consortium_lab.engine import events as ev
from consortium_lab.engine import markdown as md
from consortium_lab.engine.records import MemberRecord, SynthesisRecord

if TYPE_CHECKING:
    import pandas as pd

Status = Literal[
    "running", "completed", "completed_with_warnings", "failed", "cancelled", "interrupted"
]

# The names a result's readers know its parts by: they are the records themselves.
MemberResult = MemberRecord
Synthesis = SynthesisRecord


class IterationResult(BaseModel):
    number: int
    members: list[MemberRecord] = Field(default_factory=list)
    synthesis: SynthesisRecord | None = None

    @property
    def answers(self) -> list[MemberRecord]:
        """The members' answers of this iteration (peer reviews excluded)."""
        return [m for m in self.members if m.stage == "answer"]


class RunResult(BaseModel):
    """Everything a run produced. Build one with :meth:`from_events`."""

    run_id: str
    prompt: str
    config: dict[str, Any]
    conversation_id: str | None = None
    turn: int = 1
    started_at: str
    finished_at: str | None = None
    status: Status = "running"
    error: str | None = None
    errors: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(
        default_factory=list, description="Why the run ended 'completed_with_warnings'."
    )
    iterations: list[IterationResult] = Field(default_factory=list)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_events(cls, events: Iterable[ev.Event]) -> RunResult:
        """Fold a run's events (deltas are ignored) into a result."""
        result: RunResult | None = None
        for event in events:
            if isinstance(event, ev.RunStarted):
                result = cls(
                    run_id=event.run_id,
                    prompt=event.prompt,
                    config=event.config,
                    conversation_id=event.conversation_id,
                    turn=event.turn,
                    started_at=event.at,
                )
            elif result is None:
                raise ValueError(f"event stream must start with run_started, got {event.kind}")
            else:
                result.apply(event)
        if result is None:
            raise ValueError("no run_started event: nothing to build a result from")
        return result

    def apply(self, event: ev.Event) -> None:
        """Fold one more event into this result."""
        if isinstance(event, ev.IterationStarted):
            self._iteration(event.iteration)
        elif isinstance(event, (ev.MemberDone, ev.MemberFailed)):
            self._iteration(event.iteration).members.append(MemberRecord.of(event))
        elif isinstance(event, ev.SynthesisReady):
            self._iteration(event.iteration).synthesis = SynthesisRecord.of(event)
        elif isinstance(event, ev.RunFinished):
            self.status = event.status
            self.warnings = list(event.warnings)
            self.finished_at = event.at
        elif isinstance(event, ev.RunFailed):
            self.status = "failed"
            self.error = event.reason
            self.errors = dict(event.errors)
            self.finished_at = event.at

    def _iteration(self, number: int) -> IterationResult:
        for it in self.iterations:
            if it.number == number:
                return it
        it = IterationResult(number=number)
        self.iterations.append(it)
        return it

    # -- reading --------------------------------------------------------------------------
    @property
    def synthesis(self) -> SynthesisRecord | None:
        """The last iteration's synthesis (None in compare mode or before the arbiter spoke)."""
        for it in reversed(self.iterations):
            if it.synthesis is not None:
                return it.synthesis
        return None

    @property
    def text(self) -> str:
        """The answer to show: the synthesis, else (compare mode) the first member answer."""
        if self.synthesis is not None:
            return self.synthesis.synthesis
        answers = self.final_answers
        return answers[0].answer if answers else ""

    @property
    def confidence(self) -> float | None:
        """The final synthesis confidence."""
        return self.synthesis.confidence if self.synthesis else None

    @property
    def final_answers(self) -> list[MemberRecord]:
        """Members' answers of the last iteration that has any, in config order."""
        for it in reversed(self.iterations):
            if it.answers:
                return self.in_config_order(it.answers)
        return []

    def in_config_order(self, members: Iterable[MemberRecord]) -> list[MemberRecord]:
        """``members`` sorted as the config lists their models, then by instance (a model the
        config does not list goes last)."""
        order = {model: i for i, model in enumerate(self.models_used)}
        return sorted(members, key=lambda m: (order.get(m.model, len(order)), m.model, m.instance))

    @property
    def models_used(self) -> list[str]:
        """Each configured member model once, in config order."""
        return list(self.config.get("models", {}))

    @property
    def arbiter(self) -> str | None:
        """The arbiter model (None in compare and vote modes)."""
        if self.config.get("mode") in ARBITERLESS_MODES:
            return None
        models = self.models_used
        return self.config.get("arbiter") or (models[0] if models else None)

    # -- exporting ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON export: the seed shape of the architecture guide plus every iteration."""
        synthesis = self.synthesis
        return {
            "original_prompt": self.prompt,
            "model_responses": [
                {
                    "model": m.model,
                    "instance": m.instance,
                    # The member's full reply, as the seed and llm-consortium export it.
                    "response": m.text if m.status == "done" else "",
                    "answer": m.answer if m.status == "done" else "",
                    "thought_process": m.thought_process if m.status == "done" else "",
                    "confidence": m.confidence,
                    "error": m.error,
                    "served_by": m.served_by,
                    "cached": m.cached,
                }
                for m in self.final_answers
            ],
            "synthesis": {
                "synthesis": synthesis.synthesis if synthesis else self.text,
                "confidence": synthesis.confidence if synthesis else None,
                "analysis": synthesis.analysis if synthesis else "",
                "dissent": synthesis.dissent if synthesis else "",
                "needs_iteration": synthesis.needs_iteration if synthesis else False,
                "refinement_areas": list(synthesis.refinement_areas) if synthesis else [],
                "parse_ok": synthesis.parse_ok if synthesis else True,
            },
            "metadata": {
                "models_used": self.models_used,
                "arbiter": self.arbiter,
                "timestamp": self.started_at,
                "finished_at": self.finished_at,
                "iteration_count": len(self.iterations),
                "run_id": self.run_id,
                "conversation_id": self.conversation_id,
                "mode": self.config.get("mode", "consortium"),
                "status": self.status,
                "error": self.error,
            },
            "iterations": [it.model_dump(mode="json") for it in self.iterations],
            "config": self.config,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_pandas(self) -> pd.DataFrame:
        """One row per member call (every iteration and stage), with the iteration's synthesis
        confidence alongside."""
        import pandas as pd

        rows = []
        for it in self.iterations:
            for m in it.members:
                row = m.to_flat()
                row["run_id"] = self.run_id
                row["synthesis_confidence"] = it.synthesis.confidence if it.synthesis else None
                rows.append(row)
        return pd.DataFrame(rows)

    def to_markdown(self) -> str:
        """A readable Markdown report of the run. Model text (and the prompt) has its HTML
        escaped and its code fences closed (:mod:`.markdown`); members are listed as the page
        lists them (config order)."""
        title = md.safe_line(self.prompt) or "(empty prompt)"
        lines = [f"# {title}", "", f"*Run `{self.run_id}` — {self.status}*", ""]
        if "\n" in self.prompt.strip():
            lines += ["## Prompt", "", md.safe_text(self.prompt), ""]
        synthesis = self.synthesis
        if synthesis is not None:
            conf = _pct(synthesis.confidence)
            body = md.safe_text(synthesis.synthesis)
            lines += ["## Synthesis", "", f"**Confidence:** {conf}", "", body, ""]
            if not synthesis.parse_ok:
                warnings = md.safe_line("; ".join(synthesis.warnings))
                lines += [f"> ⚠ Arbiter output did not parse cleanly: {warnings}", ""]
            for title, text in (("Analysis", synthesis.analysis), ("Dissent", synthesis.dissent)):
                if text:
                    lines += [f"### {title}", "", md.safe_text(text), ""]
            if synthesis.refinement_areas:
                lines += (
                    ["### Refinement areas", ""]
                    + [f"- {md.safe_line(a)}" for a in synthesis.refinement_areas]
                    + [""]
                )
        for it in self.iterations:
            lines += [f"## Iteration {it.number}", ""]
            for m in self.in_config_order(it.members):
                head = f"### {md.safe_line(m.model)} #{m.instance}" + (
                    "" if m.stage == "answer" else f" ({m.stage})"
                )
                if m.status == "failed":
                    error = md.safe_line(m.error or "")
                    lines += [head, "", f"**Failed** ({m.error_type}): {error}", ""]
                else:
                    served = (
                        f" — served by {md.safe_line(m.served_by)}"
                        if m.served_by and m.served_by != m.model
                        else ""
                    )
                    conf = _pct(m.confidence)
                    lines += [
                        head,
                        "",
                        f"*Confidence: {conf}{served}*",
                        "",
                        md.safe_text(m.answer),
                        "",
                    ]
        if self.error:
            lines += ["## Error", "", md.safe_text(self.error), ""]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        synthesis = self.synthesis
        rows = "".join(
            f"<tr><td>{html.escape(m.model)} #{m.instance}</td><td>{m.iteration}</td>"
            f"<td>{html.escape(m.stage)}</td><td>{_pct(m.confidence)}</td>"
            f"<td>{html.escape(m.error or ('cached' if m.cached else ''))}</td></tr>"
            for it in self.iterations
            for m in it.members
        )
        body = html.escape(self.text).replace("\n", "<br>")
        warn = (
            "<p><b>⚠ Arbiter output did not parse cleanly:</b> "
            f"{html.escape('; '.join(synthesis.warnings))}</p>"
            if synthesis is not None and not synthesis.parse_ok
            else ""
        )
        return (
            f"<div><p><b>{html.escape(self.prompt)}</b> — {self.status}, "
            f"{len(self.iterations)} iteration(s), confidence {_pct(self.confidence)}</p>{warn}"
            f"<blockquote>{body}</blockquote>"
            "<table><tr><th>member</th><th>iteration</th><th>stage</th><th>confidence</th>"
            f"<th>note</th></tr>{rows}</table></div>"
        )


def _pct(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0%}"
