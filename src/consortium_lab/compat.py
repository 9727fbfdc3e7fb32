"""A drop-in for ``llm_consortium.create_consortium`` that runs on our engine.

``create_consortium(...)`` takes upstream's arguments and returns an object whose
``.orchestrate(prompt)`` returns upstream's result dict (``synthesis``, ``iterations``,
``metadata`` with ``total_iterations``/``consortium_id``/``config``, ``original_prompt``), with
the seed export keys (``model_responses``, ``metadata.models_used`` …) added. Unlike upstream it
streams and runs members concurrently; like upstream it blocks, and it also works inside a running
event loop (Jupyter) by running in a worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from consortium_lab.config.consortium import ConsortiumConfig, parse_models
from consortium_lab.engine.consortium import Consortium
from consortium_lab.engine.result import RunResult


class CompatOrchestrator:
    """What ``create_consortium`` returns: upstream's interface on our engine."""

    def __init__(self, consortium: Consortium, config_name: str | None = None) -> None:
        self.consortium = consortium
        self.config_name = config_name

    @property
    def config(self) -> ConsortiumConfig:
        return self.consortium.config

    def orchestrate(
        self,
        prompt: str,
        conversation_history: str | None = None,
        consortium_id: str | None = None,
    ) -> dict[str, Any]:
        """Run the consortium and return upstream's result dict.

        ``conversation_history`` (upstream's flat text history) is prepended to the prompt, as
        upstream's manual-context mode does.
        """
        text = f"{conversation_history}\n\n{prompt}" if conversation_history else prompt
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            result = asyncio.run(self.consortium.run(text))
        else:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                result = pool.submit(asyncio.run, self.consortium.run(text)).result()
        return to_upstream_dict(result, consortium_id=consortium_id, original_prompt=prompt)


def to_upstream_dict(
    result: RunResult, *, consortium_id: str | None = None, original_prompt: str | None = None
) -> dict[str, Any]:
    """Upstream's ``orchestrate`` result shape, plus our seed export keys."""
    seed = result.to_dict()
    synthesis = {
        **seed["synthesis"],
        "ranking": result.synthesis.ranking if result.synthesis else [],
    }
    iterations = [
        {
            "iteration": it.number,
            "selected_models": {m.model: 1 for m in it.answers},
            "model_responses": [
                {
                    "model": m.model,
                    "instance": m.instance - 1,  # upstream numbers instances from 0
                    "response": m.text,
                    "confidence": m.confidence,
                    "error": m.error,
                }
                for m in it.answers
            ],
            "synthesis": it.synthesis.model_dump() if it.synthesis else {},
        }
        for it in result.iterations
    ]
    return {
        **seed,
        "original_prompt": original_prompt if original_prompt is not None else result.prompt,
        "synthesis": synthesis,
        "iterations": iterations,
        "metadata": {
            **seed["metadata"],
            "total_iterations": len(result.iterations),
            "consortium_id": consortium_id or result.run_id,
            "config": result.config,
        },
    }


def create_consortium(
    models: Any,
    arbiter: str | None = None,
    confidence_threshold: float = 0.8,
    max_iterations: int = 3,
    minimum_iterations: int = 1,
    system_prompt: str | None = None,
    judging_method: str = "default",
    manual_context: bool = False,
    strategy: str = "default",
    strategy_params: dict[str, Any] | None = None,
    config_name: str | None = None,
    embedding_backend: str | None = None,
    embedding_model: str | None = None,
    **settings: Any,
) -> CompatOrchestrator:
    """``llm_consortium.create_consortium`` with the same arguments, run by our engine.

    Extra keyword arguments are our own settings (``mode``, ``gateway``, ``store`` …).
    ``manual_context``, ``strategy_params``, ``embedding_backend`` and ``embedding_model`` tune
    upstream's own context and embedding machinery, which our engine does not have: they are
    accepted so existing calls keep working, and ignored.
    """
    del manual_context, strategy_params, embedding_backend, embedding_model
    engine_args = {
        k: settings.pop(k) for k in ("gateway", "store", "check_models", "sinks") if k in settings
    }
    config = ConsortiumConfig(
        models=parse_models(models) if not isinstance(models, dict) else models,
        arbiter=arbiter,
        confidence_threshold=confidence_threshold,
        max_iterations=max_iterations,
        minimum_iterations=minimum_iterations,
        system_prompt=system_prompt,
        judging_method=judging_method,
        strategy=strategy,
        **settings,
    )
    return CompatOrchestrator(Consortium(config, **engine_args), config_name=config_name)
