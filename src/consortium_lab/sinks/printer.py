"""The terminal sink: live per-member progress lines while a run streams, then the answer.

On a terminal the block of member lines is redrawn in place (at most ten times a second); when
output is piped, one line is printed per finished member and per synthesis instead.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from consortium_lab.config.catalog import DEMO_PREFIX
from consortium_lab.engine import events as ev


def label(model: str) -> str:
    """A model's display name; offline demo models are labelled as such."""
    return f"{model} (offline demo)" if model.startswith(DEMO_PREFIX) else model


@dataclass
class _Line:
    name: str
    state: str = "waiting"
    chars: int = 0
    started: float = field(default_factory=time.monotonic)
    detail: str = ""


class TerminalPrinter:
    """Call it with each event (it is a sink)."""

    def __init__(self, out: TextIO | None = None, *, live: bool | None = None) -> None:
        self.out = out or sys.stderr
        self.live = self.out.isatty() if live is None else live
        self.lines: dict[str, _Line] = {}
        self._drawn = 0
        self._last_draw = 0.0

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            models = ", ".join(label(m) for m in event.config.get("models", {}))
            self._print(f"Asking {models}")
        elif isinstance(event, ev.IterationStarted):
            self._commit()
            self._print(f"— iteration {event.iteration} —")
            self.lines = {}
        elif isinstance(event, ev.MemberDelta):
            line = self._line(f"{label(event.model)} #{event.instance}", event.stage)
            line.state, line.chars = "streaming", line.chars + len(event.text)
            self._draw()
        elif isinstance(event, ev.MemberQueued):
            line = self._line(f"{label(event.model)} #{event.instance}", event.stage)
            line.state = "queued (one call at a time)" if event.queued else "started"
            self._draw(force=True)
        elif isinstance(event, ev.MemberDone):
            line = self._line(f"{label(event.model)} #{event.instance}", event.stage)
            conf = "unknown" if event.confidence is None else f"{event.confidence:.0%}"
            extra = " (cached)" if event.cached else ""
            if event.served_by and event.served_by != event.model:
                extra += f" served by {event.served_by}"
            if event.truncated:
                extra += f", truncated ({event.error_type})"
            line.state, line.detail = (
                "done",
                f"confidence {conf}, {(event.latency_ms or 0) / 1000:.1f} s{extra}",
            )
            self._draw(force=True)
            if not self.live:
                self._print(f"  {line.name}: {line.detail}")
        elif isinstance(event, ev.MemberFailed):
            line = self._line(f"{label(event.model)} #{event.instance}", event.stage)
            line.state, line.detail = "failed", f"{event.error_type}: {event.error}"
            self._draw(force=True)
            if not self.live:
                self._print(f"  {line.name}: FAILED {line.detail}")
        elif isinstance(event, ev.ArbiterDelta):
            line = self._line(f"{label(event.model)} (arbiter)", "arbiter")
            line.state, line.chars = "synthesizing", line.chars + len(event.text)
            self._draw()
        elif isinstance(event, ev.SynthesisReady) and event.votes:
            self._commit()
            self._print(f"  vote: {event.analysis}")
        elif isinstance(event, ev.SynthesisReady):
            self._commit()
            conf = "unknown" if event.confidence is None else f"{event.confidence:.0%}"
            warn = (
                ""
                if event.parse_ok
                else f"  ⚠ arbiter output did not parse: {'; '.join(event.warnings)}"
            )
            more = ", wants another iteration" if event.needs_iteration else ""
            self._print(f"  synthesis by {label(event.model)}: confidence {conf}{more}{warn}")
        elif isinstance(event, ev.RunFailed):
            self._commit()
            self._print(f"Run failed: {event.reason}")
        elif isinstance(event, ev.RunFinished):
            self._commit()
            self._print(f"Finished after {event.iterations} iteration(s) ({event.status}).")
            for warning in event.warnings:
                self._print(f"  ⚠ {warning}")

    def _line(self, name: str, stage: str) -> _Line:
        key = name if stage in ("answer", "arbiter", "chair") else f"{name} [{stage}]"
        if key not in self.lines:
            self.lines[key] = _Line(key)
        return self.lines[key]

    def _draw(self, force: bool = False) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
        for line in self.lines.values():
            age = now - line.started
            detail = line.detail or f"{line.chars} chars, {age:.1f} s"
            self.out.write(f"  {line.name}: {line.state} — {detail}\n")
        self._drawn = len(self.lines)
        self.out.flush()

    def _commit(self) -> None:
        if self.live and self.lines:
            self._draw(force=True)
        self._drawn = 0
        self.lines = {}

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
