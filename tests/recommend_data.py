"""A run log with two topics for the recommender tests: Python questions, where ``py-expert``
agrees with the arbiter, and cooking questions, where ``chef`` does.

``script_topic_models`` scripts the loopback server so that each model's answer, and the
arbiter's synthesis, depend on the prompt's topic; ``record_topic_run`` writes the same kind
of run through the run-log API (for tests whose process cannot reach the models).
"""

from __future__ import annotations

from typing import Any

from consortium_lab.engine.events import (
    IterationFinished,
    IterationStarted,
    MemberDone,
    RunFinished,
    RunStarted,
    SynthesisReady,
)
from consortium_lab.sinks.runlog import RunStore

from fake_openai import ModelScript
from helpers import arbiter_reply, last_user_text, member_reply

PYTHON_PROMPTS = [
    "How do I sort a python list?",
    "How do I reverse a python list?",
    "How do I filter a python list by a condition?",
    "How do I copy a python list safely?",
    "How do I remove duplicates from a python list?",
]
COOKING_PROMPTS = [
    "How long should I cook onions for soup?",
    "How do I cook onions without burning them?",
    "Should I cook onions in butter or oil?",
    "How do I cook onions until they caramelise?",
    "Why do my cook onions taste bitter?",
]
PYTHON_ANSWER = "Call sorted on the list to build a new ordered list."
COOKING_ANSWER = "Simmer the onions slowly in butter for twenty minutes."
EXPERT = {"python": ("py-expert", PYTHON_ANSWER), "cooking": ("chef", COOKING_ANSWER)}
DONT_KNOW = "I really cannot say much about that subject here."


def topic(text: str) -> str:
    return "python" if "python" in text.lower() else "cooking"


def answer_of(model: str, prompt: str) -> str:
    expert, answer = EXPERT[topic(prompt)]
    return answer if model == expert else DONT_KNOW


def script_topic_models(fake: Any) -> dict[str, Any]:
    """Scripts ``py-expert``, ``chef`` and the arbiter ``judge``; returns the chat config."""
    for model in ("py-expert", "chef"):
        fake.add_model(
            model,
            ModelScript(
                reply=lambda body, model=model: member_reply(
                    answer_of(model, last_user_text(body)), 0.8
                )
            ),
        )
    fake.add_model(
        "judge",
        ModelScript(reply=lambda body: arbiter_reply(EXPERT[topic(last_user_text(body))][1], 0.9)),
    )
    return {"models": {"py-expert": 1, "chef": 1}, "arbiter": "judge"}


def record_topic_run(store: RunStore, run_id: str, prompt: str) -> None:
    """One completed run of ``py-expert`` and ``chef`` on ``prompt``, written as events."""
    config = {"models": {"py-expert": 1, "chef": 1}, "arbiter": "judge", "mode": "consortium"}
    store.record(RunStarted(run_id=run_id, prompt=prompt, config=config))
    store.record(IterationStarted(run_id=run_id, iteration=1))
    for model in ("py-expert", "chef"):
        text = answer_of(model, prompt)
        store.record(
            MemberDone(
                run_id=run_id,
                model=model,
                instance=1,
                iteration=1,
                text=f"<answer>{text}</answer>",
                answer=text,
                latency_ms=100.0,
            )
        )
    synthesis = EXPERT[topic(prompt)][1]
    store.record(
        SynthesisReady(
            run_id=run_id, iteration=1, model="judge", synthesis=synthesis, confidence=0.9
        )
    )
    store.record(IterationFinished(run_id=run_id, iteration=1, confidence=0.9))
    store.record(RunFinished(run_id=run_id, iterations=1, confidence=0.9))
