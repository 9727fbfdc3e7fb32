"""The offline demo models, exercised through the real ``llm`` API and CLI."""

from __future__ import annotations

import re
import time
from pathlib import Path

import llm
import pytest
from click.testing import CliRunner
from llm.cli import cli as llm_cli

from consortium_lab.config import catalog
from consortium_lab.demo_models import MODEL_IDS, confidence_from_agreement
from consortium_lab.prompts import templates as prompts
from consortium_lab.prompts.parsing import (
    parse_arbiter_response,
    parse_member_response,
    parse_ranking,
)

MEMBERS = ("demo-analyst", "demo-optimist", "demo-skeptic")
QUESTION = "Should a small city invest in solar power for its public buildings?"
MEMBER_FORMAT = re.compile(
    r"\A<thinking>\n.+\n</thinking>\n<answer>\n.+\n</answer>\n<confidence>0\.\d\d</confidence>\Z",
    re.DOTALL,
)


@pytest.fixture(autouse=True)
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Instant demo models and a fresh home, config, data and llm folder for every test."""
    monkeypatch.setenv("CONSORTIUM_LAB_DEMO_DELAY", "0")
    for name, folder in (
        ("HOME", "home"),
        ("XDG_CONFIG_HOME", "home/.config"),
        ("XDG_DATA_HOME", "home/.local/share"),
        ("LLM_USER_PATH", "llm"),
    ):
        path = tmp_path / "demo" / folder
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(path))
    # llm-consortium's plugin opens a database there on every model listing.
    (tmp_path / "demo" / "home" / ".config" / "io.datasette.llm").mkdir()


def ask(model_id: str, prompt: str, system: str | None = None) -> str:
    return llm.get_model(model_id).prompt(prompt, system=system).text()


def member_answer(model_id: str, question: str = QUESTION) -> str:
    system = prompts.member_system_prompt(None, None)
    return ask(model_id, prompts.wrap_user_prompt(question), system=system)


def arbiter_text(answers: list[str], question: str = QUESTION) -> str:
    candidates = [
        prompts.Candidate(i, model, answer, 0.8)
        for i, (model, answer) in enumerate(zip(MEMBERS * 3, answers, strict=False), 1)
    ]
    return ask("demo-arbiter", prompts.arbiter_prompt(question, candidates, [], None))


# --------------------------------------------------------------------------- registration


def test_demo_models_are_registered_sync_and_async() -> None:
    assert set(MODEL_IDS) == {*MEMBERS, "demo-arbiter"}
    for model_id in MODEL_IDS:
        assert model_id.startswith(catalog.DEMO_PREFIX)
        model, async_model = llm.get_model(model_id), llm.get_async_model(model_id)
        assert model.model_id == async_model.model_id == model_id
        assert model.can_stream and async_model.can_stream
        assert "offline demo model" in str(model).lower()
        assert "offline demo model" in str(async_model).lower()
        assert not model.needs_key


def test_llm_models_lists_demo_models_with_label() -> None:
    result = CliRunner().invoke(llm_cli, ["models"])
    assert result.exit_code == 0, result.output
    for model_id in MODEL_IDS:
        line = next(x for x in result.output.splitlines() if f": {model_id} " in x)
        assert "Offline demo model" in line


def test_catalog_offers_demo_models_without_any_key() -> None:
    infos = {i.model_id: i for i in catalog.list_models()}
    for model_id in MODEL_IDS:
        info = infos[model_id]
        assert info.usable and info.is_demo and info.has_async
        assert info.label == f"{model_id} (offline demo model)"
    assert not (Path(llm.user_dir()) / "keys.json").exists()


# --------------------------------------------------------------------------- members


def test_same_prompt_same_text_and_models_differ() -> None:
    first = {m: member_answer(m) for m in MEMBERS}
    assert first == {m: member_answer(m) for m in MEMBERS}
    assert len(set(first.values())) == len(MEMBERS)
    assert member_answer("demo-analyst", "Why is the sky blue?") != first["demo-analyst"]


def test_member_answers_follow_the_member_format() -> None:
    confidences = {}
    for model_id in MEMBERS:
        text = member_answer(model_id)
        assert MEMBER_FORMAT.match(text), text
        parsed = parse_member_response(text)
        assert not parsed.warnings
        assert "offline demo model" in parsed.thought_process.lower()
        assert "buildings" in parsed.answer and "invest" in parsed.answer
        assert parsed.confidence is not None and 0 < parsed.confidence < 1
        confidences[model_id] = parsed.confidence
    assert confidences["demo-skeptic"] < confidences["demo-analyst"] < confidences["demo-optimist"]


def test_members_partly_agree() -> None:
    sentences = [set(parse_member_response(member_answer(m)).answer.split(". ")) for m in MEMBERS]
    assert set.intersection(*sentences), "every member shares at least one point"
    assert len(set.union(*sentences)) > len(sentences[0]), "and they also differ"


def test_plain_prompt_gets_a_member_answer() -> None:
    for model_id in MODEL_IDS:
        text = ask(model_id, "hi")
        assert MEMBER_FORMAT.match(text), text
        assert parse_member_response(text).answer


def test_streaming_yields_chunks_that_make_the_text() -> None:
    response = llm.get_model("demo-optimist").prompt(QUESTION)
    chunks = list(response)
    assert len(chunks) >= 10
    assert "".join(chunks) == response.text()
    assert all(1 <= len(c.split()) <= 3 for c in chunks)


async def test_async_streaming_matches_sync() -> None:
    response = llm.get_async_model("demo-skeptic").prompt(QUESTION)
    chunks = [chunk async for chunk in response]
    assert len(chunks) >= 10
    assert "".join(chunks) == await response.text() == ask("demo-skeptic", QUESTION)


def test_delay_environment_variable_sets_the_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    model = llm.get_model("demo-analyst")
    chunks = len(list(model.prompt(QUESTION)))
    monkeypatch.setenv("CONSORTIUM_LAB_DEMO_DELAY", "0.004")
    start = time.perf_counter()
    assert len(list(model.prompt(QUESTION))) == chunks
    assert time.perf_counter() - start >= 0.004 * chunks * 0.9
    monkeypatch.setenv("CONSORTIUM_LAB_DEMO_DELAY", "not a number")  # falls back to the default
    assert model.prompt("hi", stream=False).text()


def test_usage_is_reported_in_words() -> None:
    response = llm.get_model("demo-analyst").prompt(QUESTION, system="Be brief.")
    text = response.text()
    assert response.input_tokens == len(QUESTION.split()) + 2
    assert response.output_tokens == len(text.split())


def test_conversation_history_is_taken_into_account() -> None:
    conversation = llm.get_model("demo-analyst").conversation()
    conversation.prompt(prompts.wrap_user_prompt("How do volcanoes erupt?")).text()
    follow_up = prompts.wrap_user_prompt("And earthquakes?")
    text = conversation.prompt(follow_up).text()
    assert "earlier question about volcanoes" in text
    assert text != ask("demo-analyst", follow_up)


def test_iteration_prompt_refines_and_raises_confidence() -> None:
    first = parse_member_response(member_answer("demo-skeptic"))
    synthesis = "Solar panels on public buildings need a clear budget."
    area = "Unshared claim: Maintenance contracts can be expensive"
    prompt = prompts.iteration_prompt(QUESTION, synthesis, [area], None)
    refined = parse_member_response(ask("demo-skeptic", prompt))
    assert synthesis in refined.answer
    assert "maintenance contracts can be expensive" in refined.answer
    assert refined.confidence is not None and first.confidence is not None
    assert refined.confidence > first.confidence


# --------------------------------------------------------------------------- arbiter


def test_arbiter_output_has_every_synthesis_field() -> None:
    text = arbiter_text([parse_member_response(member_answer(m)).answer for m in MEMBERS])
    body = text[text.index("<synthesis_output>") :]
    for field in (
        "first_impression",
        "analysis",
        "dissent",
        "synthesis",
        "confidence",
        "refinement_areas",
        "needs_iteration",
        "ranking",
    ):
        assert re.search(rf"<{field}>.+?</{field}>", body, re.DOTALL), field
    assert text.startswith("<thinking>") and "offline demo" in text.lower()
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok, parsed.warnings
    assert parsed.synthesis and parsed.refinement_areas and parsed.dissent
    assert sorted(parsed.ranking) == [1, 2, 3]
    assert parsed.confidence is not None
    assert parsed.needs_iteration == (parsed.confidence < 0.75)
    assert re.search(r"<needs_iteration>(true|false)</needs_iteration>", text)


def test_arbiter_ignores_markup_inside_member_answers() -> None:
    raw = [member_answer(m) for m in MEMBERS]  # unparsed: <thinking>, <answer>, <confidence>
    parsed = parse_arbiter_response(arbiter_text(raw))
    assert parsed.parse_ok, parsed.warnings
    assert "<" not in parsed.synthesis and "offline demo" not in parsed.synthesis.lower()


def test_arbiter_confidence_rises_with_agreement() -> None:
    same = "Solar panels cut electricity bills. Installation needs an upfront budget."
    other = "Wind turbines suit coastal towns. Grid storage remains costly."
    third = "Geothermal heating works underground. Permits take months."
    results = [
        parse_arbiter_response(arbiter_text(answers))
        for answers in ([same, other, third], [same, same, third], [same, same, same])
    ]
    confidences = [r.confidence or 0.0 for r in results]
    assert confidences == sorted(confidences) and confidences[0] == 0.3
    assert confidences[-1] == 0.95
    assert [r.needs_iteration for r in results] == [True, True, False]
    assert results[-1].synthesis == same  # shared sentences, de-duplicated
    assert "Geothermal heating works underground." in results[1].dissent
    assert results[1].ranking[-1] == 3  # the unsupported answer ranks last
    assert "Geothermal" in " ".join(results[1].refinement_areas)


def test_confidence_formula() -> None:
    assert confidence_from_agreement(0.0) == 0.3
    assert confidence_from_agreement(0.5) == 0.7
    assert confidence_from_agreement(1.0) == 0.95


def test_iterations_converge() -> None:
    system = prompts.member_system_prompt(None, None)
    confidences: list[float] = []
    previous = None
    for _ in range(3):
        if previous is None:
            member_prompt = prompts.wrap_user_prompt(QUESTION)
        else:
            member_prompt = prompts.iteration_prompt(
                QUESTION, previous.synthesis, previous.refinement_areas, None
            )
        candidates = []
        for i, model_id in enumerate(MEMBERS, 1):
            parsed = parse_member_response(ask(model_id, member_prompt, system=system))
            candidates.append(prompts.Candidate(i, model_id, parsed.answer, parsed.confidence))
        arbiter_prompt = prompts.arbiter_prompt(QUESTION, candidates, [], None)
        previous = parse_arbiter_response(ask("demo-arbiter", arbiter_prompt))
        assert previous.confidence is not None
        confidences.append(previous.confidence)
    assert confidences == sorted(confidences) and confidences[0] < confidences[-1]
    assert confidences[0] < 0.75 <= confidences[-1]


async def test_async_arbiter_matches_sync() -> None:
    answers = [parse_member_response(member_answer(m)).answer for m in MEMBERS]
    candidates = [
        prompts.Candidate(i, m, a, None)
        for i, (m, a) in enumerate(zip(MEMBERS, answers, strict=True))
    ]
    prompt = prompts.arbiter_prompt(QUESTION, candidates, [], None)
    text = await llm.get_async_model("demo-arbiter").prompt(prompt).text()
    assert text == ask("demo-arbiter", prompt)


# --------------------------------------------------------------------------- ranking


@pytest.mark.parametrize("model_id", ["demo-arbiter", "demo-skeptic"])
def test_rank_prompt_ranks_the_given_ids(model_id: str) -> None:
    shared = "Solar panels cut electricity bills. Installation needs an upfront budget."
    answers = {4: shared, 7: "Geothermal heating works underground.", 9: shared + " Grants help."}
    candidates = [prompts.Candidate(i, "hidden", a, None) for i, a in answers.items()]
    text = ask(model_id, prompts.rank_prompt(QUESTION, candidates, anonymize=True))
    assert text.startswith("Reasoning:")
    ranks = re.findall(r'<rank position="(\d+)">(\d+)</rank>', text)
    assert [int(p) for p, _ in ranks] == [1, 2, 3]
    assert [int(i) for _, i in ranks] == parse_ranking(text) == [4, 9, 7]


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.95])
def test_demo_arbiter_names_the_threshold_in_effect(threshold: float) -> None:
    answers = [parse_member_response(member_answer(m)).answer for m in MEMBERS]
    candidates = [
        prompts.Candidate(i, m, a, None)
        for i, (m, a) in enumerate(zip(MEMBERS, answers, strict=True))
    ]
    prompt = prompts.arbiter_prompt(QUESTION, candidates, [], None, threshold=threshold)
    assert f"<confidence_threshold>{threshold:g}</confidence_threshold>" in prompt
    parsed = parse_arbiter_response(ask("demo-arbiter", prompt))
    assert parsed.confidence is not None
    assert f"threshold of {threshold:.0%}" in parsed.analysis
    assert parsed.needs_iteration is (parsed.confidence < threshold)


def test_threshold_rule_precedes_the_output_format_and_is_not_the_last_line() -> None:
    """A small model answers with the last sentence it read (issue 13: SmolLM2 copied a
    closing threshold line, so 0.8 was scored as its sum): the rule sits after the data
    block, before the steps and the format, and carries its number only inside the tag."""
    candidates = [prompts.Candidate(1, "m", "The sum is 134.", None)]
    plain = prompts.arbiter_prompt("What is 39 + 95?", candidates, [], None)
    prompt = prompts.arbiter_prompt("What is 39 + 95?", candidates, [], None, threshold=0.8)
    rule_at = prompt.index("<confidence_threshold>0.8</confidence_threshold>")
    assert prompt.index("</arbiter_prompt>") < rule_at < prompt.index("<synthesis_output>")
    assert prompt.rstrip().endswith(plain.rstrip().splitlines()[-1])
    assert prompt.count("0.8") == 1
    assert "needs_iteration: true when your confidence is below" in prompt


async def test_engine_tells_the_demo_arbiter_its_threshold() -> None:
    from consortium_lab import Consortium

    consortium = Consortium(
        models=list(MEMBERS), arbiter="demo-arbiter", confidence_threshold=0.8,
        max_iterations=1, store=False,
    )  # fmt: skip
    result = await consortium.run(QUESTION)
    assert result.synthesis is not None and "threshold of 80%" in result.synthesis.analysis
