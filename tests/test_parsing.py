"""Tests for ``consortium_lab.prompts.parsing``: concrete cases plus property-based robustness."""

from __future__ import annotations

import json
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortium_lab.prompts.parsing import (
    ArbiterParse,
    MemberParse,
    normalize_confidence,
    parse_arbiter_response,
    parse_confidence_text,
    parse_member_response,
    parse_ranking,
)

# --------------------------------------------------------------------------- fixtures

THINKING_WITH_DECOYS = """<thinking>
Let me compare the responses. I must end with a <synthesis> tag and a <confidence> tag,
for example <synthesis>DECOY SYNTHESIS</synthesis> and <confidence>0.11</confidence>.
The format also has <needs_iteration>true</needs_iteration> and
<ranking><rank position="1">9</rank></ranking>. Response 2 is the strongest.
</thinking>
"""

SYNTHESIS_OUTPUT = """<synthesis_output>
    <first_impression>
        All three responses name Paris; response 2 adds useful context.
    </first_impression>

    <analysis>
        The responses agree on the core fact. Response 2 is the most complete.
    </analysis>

    <dissent>
        Response 3 mentions Versailles as a historical seat of power.
    </dissent>

    <synthesis>
        The capital of France is **Paris**.

        It has been the capital for most of French history.
    </synthesis>

    <confidence>
        0.92
    </confidence>

    <refinement_areas>
        <area>Historical capitals such as Versailles</area>
        <area>Population figures</area>
    </refinement_areas>

    <needs_iteration>
        false
    </needs_iteration>

    <ranking>
        <rank position="1">2</rank>
        <rank position="2">1</rank>
        <rank position="3">3</rank>
    </ranking>
</synthesis_output>
"""

FULL_ARBITER = THINKING_WITH_DECOYS + "\n" + SYNTHESIS_OUTPUT
EXPECTED_SYNTHESIS = (
    "The capital of France is **Paris**.\n\n"
    "        It has been the capital for most of French history."
)


def arbiter_xml(
    *,
    synthesis: str | None = "Final answer.",
    confidence: str | None = "0.8",
    areas: str | None = None,
    needs: str | None = None,
    ranking: str | None = None,
) -> str:
    """Build a template-shaped arbiter answer with the given field contents."""
    parts = ["<synthesis_output>", "<analysis>Some analysis.</analysis>"]
    if synthesis is not None:
        parts.append(f"<synthesis>{synthesis}</synthesis>")
    if confidence is not None:
        parts.append(f"<confidence>{confidence}</confidence>")
    if areas is not None:
        parts.append(f"<refinement_areas>{areas}</refinement_areas>")
    if needs is not None:
        parts.append(f"<needs_iteration>{needs}</needs_iteration>")
    if ranking is not None:
        parts.append(f"<ranking>{ranking}</ranking>")
    parts.append("</synthesis_output>")
    return "<thinking>reasoning</thinking>\n" + "\n".join(parts)


# --------------------------------------------------------------------------- normalize_confidence


@pytest.mark.parametrize("value", [0, 0.0, 0.25, 0.5, 1, 1.0, "0.7", " 0.3 "])
def test_normalize_confidence_keeps_unit_interval_values(value: float | int | str) -> None:
    number, warning = normalize_confidence(value)
    assert number == pytest.approx(float(value))
    assert warning is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(85, 0.85), (85.0, 0.85), ("85", 0.85), (100, 1.0), (1.5, 0.015), (50.5, 0.505)],
)
def test_normalize_confidence_reads_percentages_with_warning(
    value: float | int | str, expected: float
) -> None:
    number, warning = normalize_confidence(value)
    assert number == pytest.approx(expected)
    assert warning is not None
    assert "read as" in warning


def test_normalize_confidence_warning_text() -> None:
    assert normalize_confidence(85) == (0.85, "confidence 85 read as 0.85")


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (-0.1, "-0.1"),
        (-5, "-5"),
        (100.5, "100.5"),
        (250, "250"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ("high", "high"),
        ("", "''"),
        ("85%", "85%"),
        (10**400, "1000"),
    ],
)
def test_normalize_confidence_rejects_bad_values(value: float | int | str, named: str) -> None:
    with pytest.raises(ValueError, match="invalid confidence") as info:
        normalize_confidence(value)
    assert named in str(info.value)


def test_normalize_confidence_rejects_booleans() -> None:
    with pytest.raises(ValueError, match="True"):
        normalize_confidence(True)


# --------------------------------------------------------------------------- parse_confidence_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.85", 0.85),
        ("85%", 0.85),
        ("85 %", 0.85),
        ("85 percent", 0.85),
        ("0.85/1", 0.85),
        ("8/10", 0.8),
        ("85/100", 0.85),
        ("8 out of 10", 0.8),
        ("Confidence: 0.9", 0.9),
        ("confidence = 0.7", 0.7),
        ("**Confidence:** 85%", 0.85),
        ("*Confidence level*: 0.6", 0.6),
        ("My confidence is 70%.", 0.7),
        ("`0.75`", 0.75),
        ("  \n 0.4 \n ", 0.4),
        ("About 0.65, I'd say.", 0.65),
        ("1", 1.0),
        ("0", 0.0),
        ("100%", 1.0),
        (".5", 0.5),
        ("2.5e-1", 0.25),
        ("Step 2 done. Confidence: 0.9", 0.9),
    ],
)
def test_parse_confidence_text_spellings(text: str, expected: float) -> None:
    value, warnings = parse_confidence_text(text)
    assert value == pytest.approx(expected)
    assert not any("invalid" in w for w in warnings)


def test_parse_confidence_text_bare_percentage_warns() -> None:
    value, warnings = parse_confidence_text("85")
    assert value == pytest.approx(0.85)
    assert warnings == ["confidence 85 read as 0.85"]


def test_parse_confidence_text_prefers_keyword_number() -> None:
    value, warnings = parse_confidence_text("Of the 3 responses, 2 agree. Confidence: 0.8")
    assert value == pytest.approx(0.8)
    assert warnings == []


def test_parse_confidence_text_several_numbers_warns_and_takes_first() -> None:
    value, warnings = parse_confidence_text("somewhere between 0.7 and 0.8")
    assert value == pytest.approx(0.7)
    assert any("several numbers" in w for w in warnings)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("high", "no number"),
        ("-0.5", "-0.5"),
        ("150", "150"),
        ("250%", "250%"),
        ("9/5", "9/5"),
        ("3/0", "3/0"),
        ("GPT-4", "no number"),
        ("1e5", "1e5"),
        ("0.85x", "no number"),
        ("9" * 500, "invalid"),
    ],
)
def test_parse_confidence_text_unusable(text: str, fragment: str) -> None:
    value, warnings = parse_confidence_text(text)
    assert value is None
    assert any(fragment in w for w in warnings), warnings


# --------------------------------------------------------------------------- parse_member_response


def test_member_standard_format() -> None:
    text = (
        "<thinking>\nThe question asks for 6*7.\n</thinking>\n\n"
        "<answer>\n42\n</answer>\n\n<confidence>\n0.95\n</confidence>\n"
    )
    parsed = parse_member_response(text)
    assert isinstance(parsed, MemberParse)
    assert parsed.answer == "42"
    assert parsed.thought_process == "The question asks for 6*7."
    assert parsed.confidence == pytest.approx(0.95)
    assert parsed.warnings == []
    assert parsed.raw == text


def test_member_iteration_format() -> None:
    text = (
        "<problem_breakdown>Revisit the arithmetic.</problem_breakdown>\n"
        "<updated_response>It is 42.</updated_response>\n<confidence>90%</confidence>"
    )
    parsed = parse_member_response(text)
    assert parsed.answer == "It is 42."
    assert parsed.thought_process == "Revisit the arithmetic."
    assert parsed.confidence == pytest.approx(0.9)


def test_member_thought_process_tag_and_case_insensitive() -> None:
    text = (
        '<Thought_Process kind="x">Think.</THOUGHT_PROCESS>'
        "<ANSWER>Yes.</Answer><Confidence>8/10</CONFIDENCE>"
    )
    parsed = parse_member_response(text)
    assert parsed.answer == "Yes."
    assert parsed.thought_process == "Think."
    assert parsed.confidence == pytest.approx(0.8)


def test_member_decoy_tags_inside_thinking_are_ignored() -> None:
    text = (
        "<thinking>I will write <answer>DECOY</answer> and <confidence>0.1</confidence>"
        "</thinking>\n<answer>Real answer</answer>\n<confidence>0.7</confidence>"
    )
    parsed = parse_member_response(text)
    assert parsed.answer == "Real answer"
    assert parsed.confidence == pytest.approx(0.7)
    assert "DECOY" in parsed.thought_process


def test_member_without_confidence_has_none() -> None:
    parsed = parse_member_response("<thinking>t</thinking><answer>Paris</answer>")
    assert parsed.answer == "Paris"
    assert parsed.confidence is None


def test_member_plain_text_answer() -> None:
    parsed = parse_member_response("  Paris is the capital.  ")
    assert parsed.answer == "Paris is the capital."
    assert parsed.confidence is None
    assert parsed.thought_process == ""
    assert any("no <answer>" in w for w in parsed.warnings)


def test_member_no_answer_tag_removes_recognised_sections() -> None:
    text = "<thinking>hmm</thinking>\nThe answer is 4.\n<confidence>0.6</confidence>"
    parsed = parse_member_response(text)
    assert parsed.answer == "The answer is 4."
    assert parsed.thought_process == "hmm"
    assert parsed.confidence == pytest.approx(0.6)


def test_member_only_tagged_sections_falls_back_to_whole_text() -> None:
    text = "<confidence>0.6</confidence>"
    parsed = parse_member_response(text)
    assert parsed.answer == text
    assert parsed.confidence == pytest.approx(0.6)


def test_member_confidence_line_without_tag() -> None:
    parsed = parse_member_response("Paris.\n\n**Confidence:** 85%")
    assert parsed.confidence == pytest.approx(0.85)
    assert any("no <confidence> tag" in w for w in parsed.warnings)


def test_member_prose_mentioning_confidence_is_not_a_confidence() -> None:
    parsed = parse_member_response("<answer>Use a confidence of 95% for the interval.</answer>")
    assert parsed.confidence is None


def test_member_truncated_answer() -> None:
    text = "<thinking>ok</thinking>\n<answer>The first part of a long ans"
    parsed = parse_member_response(text)
    assert parsed.answer == "The first part of a long ans"
    assert parsed.confidence is None
    assert any("never closed" in w and "answer" in w for w in parsed.warnings)


def test_member_truncated_thinking() -> None:
    text = "<thinking>Still reasoning about"
    parsed = parse_member_response(text)
    assert parsed.thought_process == "Still reasoning about"
    assert parsed.confidence is None
    assert any("<thinking> was opened but never closed" in w for w in parsed.warnings)


def test_member_truncated_thinking_mentioning_answer_tag() -> None:
    text = "<thinking>I will put the result in <answer> tags once I kno"
    parsed = parse_member_response(text)
    assert parsed.thought_process == "I will put the result in <answer> tags once I kno"
    assert parsed.answer == text  # no answer: fall back to the whole text
    assert parsed.confidence is None
    assert any("never closed" in w for w in parsed.warnings)


def test_member_unclosed_answer_stops_at_next_tag() -> None:
    parsed = parse_member_response("<answer>42\n<confidence>0.9</confidence>")
    assert parsed.answer == "42"
    assert parsed.confidence == pytest.approx(0.9)
    assert any("never closed" in w for w in parsed.warnings)


def test_member_unreadable_confidence() -> None:
    parsed = parse_member_response("<answer>x</answer><confidence>very high</confidence>")
    assert parsed.confidence is None
    assert any("no number" in w for w in parsed.warnings)


def test_member_fenced() -> None:
    text = "```xml\n<answer>fenced</answer>\n<confidence>0.5</confidence>\n```"
    parsed = parse_member_response(text)
    assert parsed.answer == "fenced"
    assert parsed.confidence == pytest.approx(0.5)


def test_member_empty_answer_tag_warns() -> None:
    parsed = parse_member_response("<answer></answer><confidence>0.5</confidence>")
    assert parsed.answer == ""
    assert "<answer> is empty" in parsed.warnings


def test_member_empty() -> None:
    parsed = parse_member_response("")
    assert parsed.answer == ""
    assert parsed.confidence is None
    assert parsed.raw == ""


# --------------------------------------------------------------------------- parse_arbiter_response


def test_arbiter_template_output_with_decoy_thinking() -> None:
    parsed = parse_arbiter_response(FULL_ARBITER)
    assert isinstance(parsed, ArbiterParse)
    assert parsed.parse_ok is True
    assert parsed.warnings == []
    assert parsed.synthesis == EXPECTED_SYNTHESIS
    assert "DECOY" not in parsed.synthesis
    assert parsed.confidence == pytest.approx(0.92)
    assert parsed.analysis.startswith("The responses agree")
    assert parsed.dissent.startswith("Response 3 mentions Versailles")
    assert parsed.needs_iteration is False
    assert parsed.refinement_areas == [
        "Historical capitals such as Versailles",
        "Population figures",
    ]
    assert parsed.ranking == [2, 1, 3]
    assert parsed.raw == FULL_ARBITER


def test_arbiter_without_wrapper_uses_last_occurrence() -> None:
    text = (
        "I will use <synthesis>tags</synthesis> and <confidence>0.1</confidence> below.\n\n"
        "<synthesis>Real synthesis.</synthesis>\n<confidence>0.77</confidence>\n"
        "<needs_iteration>true</needs_iteration>"
    )
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok
    assert parsed.synthesis == "Real synthesis."
    assert parsed.confidence == pytest.approx(0.77)
    assert parsed.needs_iteration is True


def test_arbiter_unclosed_thinking_before_wrapper() -> None:
    text = "<thinking>I forgot to close this. <synthesis>DECOY</synthesis>\n" + SYNTHESIS_OUTPUT
    parsed = parse_arbiter_response(text)
    assert parsed.synthesis == EXPECTED_SYNTHESIS
    assert parsed.confidence == pytest.approx(0.92)
    assert any("<thinking> was never closed" in w for w in parsed.warnings)


@pytest.mark.parametrize("transform", [str.upper, str.lower, str.title])
def test_arbiter_tag_case(transform: object) -> None:
    assert callable(transform)
    text = transform(FULL_ARBITER)
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok
    assert parsed.confidence == pytest.approx(0.92)
    assert parsed.ranking == [2, 1, 3]
    assert "paris" in parsed.synthesis.lower()
    assert "decoy" not in parsed.synthesis.lower()
    assert parsed.raw == text


def test_arbiter_attributes_and_whitespace_in_tags() -> None:
    text = (
        '< synthesis_output version="2" >\n'
        '<synthesis  lang="en"\n>Answer with attrs.</ synthesis >\n'
        "<CONFIDENCE type='float'>\n\n 0.66 \n\n</CONFIDENCE >\n"
        '<Needs_Iteration value="x">  No.  </Needs_Iteration>\n'
        "</synthesis_output>"
    )
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok
    assert parsed.synthesis == "Answer with attrs."
    assert parsed.confidence == pytest.approx(0.66)
    assert parsed.needs_iteration is False


@pytest.mark.parametrize("fence", ["```xml\n", "```\n", "```XML\n"])
def test_arbiter_fenced(fence: str) -> None:
    text = fence + FULL_ARBITER + "\n```\n"
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok
    assert parsed.synthesis == EXPECTED_SYNTHESIS
    assert parsed.confidence == pytest.approx(0.92)
    assert parsed.raw == text


def test_arbiter_fenced_with_leading_prose() -> None:
    text = "Here is my synthesis:\n\n```xml\n" + SYNTHESIS_OUTPUT + "```\n"
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok
    assert parsed.synthesis == EXPECTED_SYNTHESIS


def test_arbiter_synthesis_containing_code_fence() -> None:
    code = "Use this:\n\n```python\nprint('hi')\n```"
    parsed = parse_arbiter_response(arbiter_xml(synthesis=code))
    assert parsed.parse_ok
    assert parsed.synthesis == code


def test_arbiter_json() -> None:
    payload = {
        "analysis": "They agree.",
        "dissent": "",
        "synthesis": "JSON synthesis.",
        "confidence": 0.81,
        "refinement_areas": ["Area one", "Area two"],
        "needs_iteration": True,
        "ranking": [3, 1, 2],
    }
    text = json.dumps(payload)
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok
    assert parsed.synthesis == "JSON synthesis."
    assert parsed.confidence == pytest.approx(0.81)
    assert parsed.analysis == "They agree."
    assert parsed.refinement_areas == ["Area one", "Area two"]
    assert parsed.needs_iteration is True
    assert parsed.ranking == [3, 1, 2]
    assert parsed.raw == text


def test_arbiter_json_fenced_with_prose_and_string_values() -> None:
    text = (
        "Sure! Here is the result:\n```json\n"
        '{"Synthesis": "Multi\nline", "Confidence": "85%", "Needs_Iteration": "Yes.",\n'
        ' "refinement_areas": "- first\\n- second", "ranking": "Response 2, Response 1"}\n'
        "```"
    )
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok, parsed.warnings
    assert parsed.synthesis == "Multi\nline"
    assert parsed.confidence == pytest.approx(0.85)
    assert parsed.needs_iteration is True
    assert parsed.refinement_areas == ["first", "second"]
    assert parsed.ranking == [2, 1]


def test_arbiter_json_percentage_number_and_missing_confidence() -> None:
    parsed = parse_arbiter_response('{"synthesis": "S", "confidence": 70}')
    assert parsed.confidence == pytest.approx(0.7)
    assert "confidence 70 read as 0.7" in parsed.warnings
    missing = parse_arbiter_response('{"synthesis": "S", "needs_iteration": false}')
    assert missing.parse_ok is False
    assert missing.confidence is None
    assert any("confidence" in w for w in missing.warnings)
    assert missing.synthesis == "S"


def test_arbiter_json_nested_under_synthesis_output() -> None:
    text = json.dumps({"synthesis_output": {"synthesis": "Nested", "confidence": "0.5"}})
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok
    assert parsed.synthesis == "Nested"
    assert parsed.confidence == pytest.approx(0.5)


def test_arbiter_json_ranking_objects() -> None:
    text = json.dumps(
        {
            "synthesis": "S",
            "confidence": 0.5,
            "ranking": [{"position": 2, "id": 1}, {"position": 1, "id": 4}],
        }
    )
    assert parse_arbiter_response(text).ranking == [4, 1]


def test_arbiter_truncated_json_keeps_partial_synthesis() -> None:
    parsed = parse_arbiter_response('```json\n{"synthesis": "The answer is partly writ')
    assert parsed.parse_ok is False
    assert parsed.synthesis == "The answer is partly writ"
    assert parsed.confidence is None


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("0.85", 0.85),
        ("85", 0.85),
        ("85%", 0.85),
        ("0.85/1", 0.85),
        ("8/10", 0.8),
        ("85/100", 0.85),
        ("Confidence: 0.9", 0.9),
        ("**0.7**", 0.7),
        ("[0.55]", 0.55),
    ],
)
def test_arbiter_confidence_spellings(spelling: str, expected: float) -> None:
    parsed = parse_arbiter_response(arbiter_xml(confidence=spelling))
    assert parsed.parse_ok
    assert parsed.confidence == pytest.approx(expected)


def test_arbiter_unreadable_confidence_fails_parse() -> None:
    parsed = parse_arbiter_response(arbiter_xml(confidence="quite high"))
    assert parsed.parse_ok is False
    assert parsed.confidence is None
    assert any("could not read a confidence" in w for w in parsed.warnings)


def test_arbiter_out_of_range_confidence_fails_parse() -> None:
    parsed = parse_arbiter_response(arbiter_xml(confidence="250"))
    assert parsed.parse_ok is False
    assert parsed.confidence is None
    assert any("250" in w for w in parsed.warnings)


@pytest.mark.parametrize(
    ("areas", "expected"),
    [
        ("<area>One</area><area>Two</area>", ["One", "Two"]),
        ("\n  <area>\n One \n</area>\n  <AREA>Two</AREA>\n", ["One", "Two"]),
        ("- One\n- Two", ["One", "Two"]),
        ("* One\n* Two", ["One", "Two"]),
        ("• One\n• Two", ["One", "Two"]),
        ("1. One\n2. Two", ["One", "Two"]),
        ("1) One\n2) Two", ["One", "Two"]),
        ("Areas to refine:\n- One\n- Two", ["One", "Two"]),
        (
            "- One that wraps\n  onto a second line\n- Two",
            ["One that wraps onto a second line", "Two"],
        ),
        ("Only a single plain line", ["Only a single plain line"]),
        ("Line one\nLine two", ["Line one", "Line two"]),
        ("", []),
        ("   \n  ", []),
        ("None", []),
        ("N/A.", []),
    ],
)
def test_arbiter_refinement_area_styles(areas: str, expected: list[str]) -> None:
    parsed = parse_arbiter_response(arbiter_xml(areas=areas))
    assert parsed.refinement_areas == expected
    assert parsed.parse_ok


def test_arbiter_missing_refinement_areas_is_empty() -> None:
    parsed = parse_arbiter_response(arbiter_xml())
    assert parsed.refinement_areas == []
    assert parsed.parse_ok


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        (" yes ", True),
        ("Yes.", True),
        ("**true**", True),
        ('"true"', True),
        ("\n  YES!\n", True),
        ("false", False),
        ("FALSE", False),
        ("no", False),
        ("No.", False),
        ("  `false`  ", False),
    ],
)
def test_arbiter_needs_iteration_spellings(spelling: str, expected: bool) -> None:
    parsed = parse_arbiter_response(arbiter_xml(needs=spelling))
    assert parsed.needs_iteration is expected
    assert parsed.parse_ok


def test_arbiter_missing_needs_iteration_is_false_without_failure() -> None:
    parsed = parse_arbiter_response(arbiter_xml(needs=None))
    assert parsed.needs_iteration is False
    assert parsed.parse_ok
    assert parsed.warnings == []


def test_arbiter_unreadable_needs_iteration_is_false_with_warning() -> None:
    parsed = parse_arbiter_response(arbiter_xml(needs="maybe"))
    assert parsed.needs_iteration is False
    assert any("needs_iteration" in w for w in parsed.warnings)


@pytest.mark.parametrize(
    ("ranking", "expected"),
    [
        ('<rank position="1">2</rank><rank position="2">1</rank>', [2, 1]),
        ('<rank position="2">1</rank><rank position="1">2</rank>', [2, 1]),
        ("<RANK POSITION='1'>3</RANK>\n<RANK POSITION='2'>1</RANK>", [3, 1]),
        ('<rank position="1">Response 2</rank><rank position="2">Response 1</rank>', [2, 1]),
        ('<rank position="1">#3</rank><rank position="2">#1</rank>', [3, 1]),
        ("2, 1, 3", [2, 1, 3]),
        ("2\n1\n3", [2, 1, 3]),
        ("", []),
    ],
)
def test_arbiter_ranking(ranking: str, expected: list[int]) -> None:
    parsed = parse_arbiter_response(arbiter_xml(ranking=ranking))
    assert parsed.ranking == expected


def test_arbiter_missing_synthesis() -> None:
    text = "<thinking>Long thoughts</thinking>\n<confidence>0.9</confidence>\nJust prose here."
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok is False
    assert "no <synthesis> found" in parsed.warnings
    assert parsed.synthesis == "Just prose here."
    assert parsed.confidence == pytest.approx(0.9)


def test_arbiter_missing_confidence() -> None:
    parsed = parse_arbiter_response(arbiter_xml(confidence=None))
    assert parsed.parse_ok is False
    assert "no <confidence> found" in parsed.warnings
    assert parsed.confidence is None
    assert parsed.synthesis == "Final answer."


def test_arbiter_empty_synthesis_fails_parse() -> None:
    parsed = parse_arbiter_response(arbiter_xml(synthesis="   "))
    assert parsed.parse_ok is False
    assert any("empty" in w for w in parsed.warnings)


def test_arbiter_plain_prose() -> None:
    text = "Paris is the capital of France."
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok is False
    assert parsed.synthesis == text
    assert parsed.confidence is None
    assert "no <synthesis> found" in parsed.warnings
    assert "no <confidence> found" in parsed.warnings


def test_arbiter_truncated_inside_synthesis() -> None:
    cut = FULL_ARBITER.index("It has been")
    text = FULL_ARBITER[:cut] + "It has been the cap"
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok is False
    assert parsed.synthesis.startswith("The capital of France is **Paris**.")
    assert parsed.synthesis.endswith("It has been the cap")
    assert "DECOY" not in parsed.synthesis
    assert parsed.confidence is None
    assert any("<synthesis> was opened but never closed" in w for w in parsed.warnings)
    assert "no <confidence> found" in parsed.warnings
    assert parsed.raw == text


def test_arbiter_truncated_inside_fenced_synthesis() -> None:
    text = "```xml\n<synthesis_output>\n<synthesis>Partial text"
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok is False
    assert parsed.synthesis == "Partial text"


def test_arbiter_truncated_after_confidence() -> None:
    cut = FULL_ARBITER.index("<refinement_areas>") + len("<refinement_areas>\n        <area>Hist")
    parsed = parse_arbiter_response(FULL_ARBITER[:cut])
    assert parsed.parse_ok is False
    assert parsed.synthesis == EXPECTED_SYNTHESIS
    assert parsed.confidence == pytest.approx(0.92)
    assert parsed.refinement_areas == ["Hist"]
    assert any("refinement_areas" in w and "never closed" in w for w in parsed.warnings)


def test_arbiter_truncated_inside_thinking() -> None:
    text = "<thinking>Comparing the responses, I think <synthesis> should say"
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok is False
    assert parsed.confidence is None
    # Everything is thinking, so the decoy <synthesis> is not taken; the raw text is the best.
    assert parsed.synthesis == text
    assert "<thinking> was opened but never closed (truncated output?)" in parsed.warnings
    assert "no <synthesis> found" in parsed.warnings


def test_arbiter_unclosed_synthesis_stops_at_next_section() -> None:
    text = (
        "<synthesis_output><synthesis>Answer text\n<confidence>0.8</confidence></synthesis_output>"
    )
    parsed = parse_arbiter_response(text)
    assert parsed.synthesis == "Answer text"
    assert parsed.confidence == pytest.approx(0.8)
    assert parsed.parse_ok is False


def test_arbiter_fields_outside_wrapper_are_used() -> None:
    text = (
        "<synthesis_output><synthesis>S</synthesis><confidence>0.5</confidence>"
        "</synthesis_output>\n<ranking>2, 1</ranking>"
    )
    parsed = parse_arbiter_response(text)
    assert parsed.ranking == [2, 1]
    assert parsed.parse_ok


def test_arbiter_empty_input() -> None:
    parsed = parse_arbiter_response("")
    assert parsed.parse_ok is False
    assert parsed.synthesis == ""
    assert parsed.confidence is None
    assert parsed.raw == ""


def test_arbiter_binary_junk() -> None:
    junk = bytes(range(256)).decode("latin-1") + "\ud800<synthesis"
    parsed = parse_arbiter_response(junk)
    assert parsed.raw == junk
    assert parsed.parse_ok is False
    assert parsed.confidence is None


def test_arbiter_huge_input() -> None:
    text = "<synthesis>" + "word " * 200_000 + "</synthesis><confidence>0.4</confidence>"
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok
    assert parsed.confidence == pytest.approx(0.4)
    assert len(parsed.synthesis) == len("word " * 200_000) - 1


def test_arbiter_many_braces_is_fast_enough() -> None:
    text = "{" * 50_000 + '"synthesis": "x"'
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok is False
    assert parsed.raw == text


ADVERSARIAL = {
    "many unclosed sections": "<analysis>" * 20_000,
    "unclosed thinking and sections": "<thinking><analysis>" * 10_000,
    "many thinking tags": "<thinking>" * 20_000,
    "many answers": "<answer>" * 20_000,
    "many closes": "</synthesis>" * 20_000,
    "many rank items": '<rank position="1">' * 20_000,
    "many ranking keywords": "Ranking:\n" * 20_000,
    "many areas": "<refinement_areas>" + "<area>" * 20_000,
    "whitespace run": "<synthesis>" + " \t" * 100_000,
    "angle brackets": "< " * 100_000,
    "braces": "{" * 100_000,
    "backslashes in json": '{"synthesis": "' + "\\\\a" * 50_000,
    "fences": "```" * 50_000,
    "confidence keywords": "Confidence: " * 20_000,
    "fractions": "0.5/" * 50_000,
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_inputs_are_handled_quickly(name: str) -> None:
    text = ADVERSARIAL[name]
    started = time.perf_counter()
    arbiter = parse_arbiter_response(text)
    member = parse_member_response(text)
    value, _warnings = parse_confidence_text(text)
    ranking = parse_ranking(text)
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"{name} took {elapsed:.1f}s"
    assert arbiter.raw == text
    assert member.raw == text
    assert _valid_confidence(arbiter.confidence)
    assert _valid_confidence(value)
    assert len(ranking) == len(set(ranking))


# --------------------------------------------------------------------------- parse_ranking


RANK_OUTPUT = """Reasoning:
Response 2 sticks to the data. Response 3 invents numbers; I put it in <ranking> last.

<ranking>
  <rank position="1">2</rank>
  <rank position="2">1</rank>
  <rank position="3">3</rank>
</ranking>
"""


def test_parse_ranking_rank_prompt_output() -> None:
    assert parse_ranking(RANK_OUTPUT) == [2, 1, 3]


def test_parse_ranking_orders_by_position() -> None:
    text = (
        '<ranking><rank position="3">1</rank><rank position="1">3</rank>'
        '<rank position="2">2</rank></ranking>'
    )
    assert parse_ranking(text) == [3, 2, 1]


def test_parse_ranking_deduplicates_keeping_first() -> None:
    text = (
        '<ranking><rank position="1">2</rank><rank position="2">2</rank>'
        '<rank position="3">1</rank></ranking>'
    )
    assert parse_ranking(text) == [2, 1]
    assert parse_ranking("<ranking>3, 1, 3, 2, 1</ranking>") == [3, 1, 2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<ranking>2, 1, 3</ranking>", [2, 1, 3]),
        ("<ranking>\n2\n1\n3\n</ranking>", [2, 1, 3]),
        ("<ranking>\n1. Response 3\n2. Response 1\n</ranking>", [3, 1]),
        ("<RANKING>#2 > #1</RANKING>", [2, 1]),
        ('<ranking><rank position="1">Response 4</rank></ranking>', [4]),
        ("```\n<ranking>1, 2</ranking>\n```", [1, 2]),
        ('<ranking><rank position="1">2</rank><rank position="2">1', [2, 1]),
        ("Ranking: 3, 1, 2", [3, 1, 2]),
        ("**Final ranking:**\n1. Response 2\n2. Response 3\n\nThanks", [2, 3]),
        ('<rank position="1">5</rank><rank position="2">4</rank>', [5, 4]),
    ],
)
def test_parse_ranking_styles(text: str, expected: list[int]) -> None:
    assert parse_ranking(text) == expected


def test_parse_ranking_ignores_thinking_decoys() -> None:
    text = (
        '<thinking>Maybe <ranking><rank position="1">9</rank></ranking>?</thinking>\n'
        '<ranking><rank position="1">1</rank><rank position="2">2</rank></ranking>'
    )
    assert parse_ranking(text) == [1, 2]


def test_parse_ranking_uses_last_ranking_section() -> None:
    text = "<ranking>9, 8</ranking> was a draft.\n<ranking>1, 2</ranking>"
    assert parse_ranking(text) == [1, 2]


@pytest.mark.parametrize("text", ["", "   ", "no ranking here", "<ranking></ranking>", "<rank>"])
def test_parse_ranking_nothing_found(text: str) -> None:
    assert parse_ranking(text) == []


# --------------------------------------------------------------------------- properties

TAG_NAMES = [
    "thinking",
    "think",
    "thought_process",
    "problem_breakdown",
    "answer",
    "updated_response",
    "confidence",
    "synthesis_output",
    "first_impression",
    "analysis",
    "dissent",
    "synthesis",
    "refinement_areas",
    "area",
    "needs_iteration",
    "ranking",
    "rank",
]
FRAGMENTS = [
    *(f"<{n}>" for n in TAG_NAMES),
    *(f"</{n}>" for n in TAG_NAMES),
    *(f"<{n.upper()} " for n in TAG_NAMES),
    '<rank position="1">',
    'position="',
    "<",
    ">",
    "</",
    "/>",
    "```",
    "```xml\n",
    "```json\n",
    "{",
    "}",
    '"synthesis": "',
    '"confidence": ',
    '"ranking": [',
    "[",
    "]",
    ",",
    ":",
    "\\",
    '"',
    "\n",
    " ",
    "- ",
    "1. ",
    "• ",
    "%",
    "/",
    "0.85",
    "85",
    "-1",
    "1e309",
    "9" * 50,
    "nan",
    "true",
    "No",
    "Confidence: ",
    "Ranking: ",
    "Response 2",
    "#3",
    "\x00",
    "\ud800",
]

fragment_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=60
).map("".join)
any_text = st.one_of(st.text(), fragment_text)

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _valid_confidence(value: float | None) -> bool:
    return value is None or (math.isfinite(value) and 0.0 <= value <= 1.0)


@PROPERTY_SETTINGS
@given(any_text)
def test_property_arbiter_never_raises(text: str) -> None:
    parsed = parse_arbiter_response(text)
    assert isinstance(parsed, ArbiterParse)
    assert parsed.raw == text
    assert _valid_confidence(parsed.confidence)
    assert all(isinstance(i, int) for i in parsed.ranking)
    assert len(parsed.ranking) == len(set(parsed.ranking))
    if not parsed.parse_ok:
        assert parsed.warnings
    if parsed.parse_ok:
        assert parsed.confidence is not None
        assert parsed.synthesis


@PROPERTY_SETTINGS
@given(any_text)
def test_property_member_never_raises(text: str) -> None:
    parsed = parse_member_response(text)
    assert isinstance(parsed, MemberParse)
    assert parsed.raw == text
    assert _valid_confidence(parsed.confidence)
    if text.strip():
        assert parsed.answer or parsed.thought_process or parsed.warnings


@PROPERTY_SETTINGS
@given(any_text)
def test_property_confidence_text_never_raises(text: str) -> None:
    value, warnings = parse_confidence_text(text)
    assert _valid_confidence(value)
    assert all(isinstance(w, str) for w in warnings)
    if value is None:
        assert warnings


@PROPERTY_SETTINGS
@given(any_text)
def test_property_ranking_never_raises(text: str) -> None:
    ranking = parse_ranking(text)
    assert all(isinstance(i, int) and i >= 0 for i in ranking)
    assert len(ranking) == len(set(ranking))


@PROPERTY_SETTINGS
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**6), max_value=10**6),
        st.text(max_size=12),
    )
)
def test_property_normalize_confidence_rule(value: float | int | str) -> None:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    try:
        result, warning = normalize_confidence(value)
    except ValueError as exc:
        assert not (0.0 <= number <= 100.0)
        assert "invalid confidence" in str(exc)
        return
    assert 0.0 <= result <= 1.0
    if 0.0 <= number <= 1.0:
        assert result == number
        assert warning is None
    else:
        assert result == pytest.approx(number / 100.0)
        assert warning is not None


@PROPERTY_SETTINGS
@given(st.floats(min_value=0.0, max_value=1.0), st.sampled_from(["", "\n  ", "**"]))
def test_property_arbiter_roundtrips_confidence(value: float, pad: str) -> None:
    text = arbiter_xml(confidence=f"{pad}{value!r}{pad}")
    parsed = parse_arbiter_response(text)
    assert parsed.parse_ok
    assert parsed.confidence == pytest.approx(value)


@PROPERTY_SETTINGS
@given(st.lists(st.integers(min_value=0, max_value=999), min_size=1, max_size=12, unique=True))
def test_property_ranking_roundtrip(ids: list[int]) -> None:
    shuffled = list(enumerate(ids, start=1))[::-1]  # written out of order
    body = "".join(f'<rank position="{pos}">{i}</rank>' for pos, i in shuffled)
    assert parse_ranking(f"Reasoning: fine.\n<ranking>{body}</ranking>") == ids
    assert parse_ranking("<ranking>" + ", ".join(map(str, ids)) + "</ranking>") == ids
