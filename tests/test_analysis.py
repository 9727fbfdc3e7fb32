"""Agreement measures on fixed texts, with exact spans, offsets and fractions."""

from __future__ import annotations

from fractions import Fraction

import pytest

from consortium_lab.analysis.agreement import (
    STOP_WORDS,
    Span,
    Token,
    consensus,
    highlight_agreement,
    highlight_refinement_areas,
    member_key,
    member_texts,
    pairwise_agreement,
    shingles,
    tokenize,
    word_frequencies,
)
from consortium_lab.engine.result import MemberResult

SKY = {
    "a#1": "The Sky is blue, because of Rayleigh scattering!",
    "b#1": "the sky is BLUE because of scattering.",
    "c#1": "Café au lait? Oui — the sky is blue.",
}


def _check_offsets(texts: dict[str, str], spans: dict[str, list[Span]]) -> None:
    """Spans are sorted, disjoint, start and end on token boundaries of the original text."""
    for key, text in texts.items():
        tokens = tokenize(text)
        starts = {t.start for t in tokens}
        ends = {t.end for t in tokens}
        previous_end = -1
        for span in spans[key]:
            assert span.start in starts and span.end in ends
            assert previous_end < span.start < span.end <= len(text)
            previous_end = span.end


# -- tokens ------------------------------------------------------------------------------------


def test_tokenize_keeps_inner_apostrophes_numbers_and_unicode_words() -> None:
    text = "Don't 'quoted' members' l’été 3.14 state-of-the-art snake_case"
    assert [t.norm for t in tokenize(text)] == [
        "don't",
        "quoted",
        "members",
        "l'été",
        "3",
        "14",
        "state",
        "of",
        "the",
        "art",
        "snake_case",
    ]
    assert tokenize(text)[:3] == [
        Token("don't", 0, 5),
        Token("quoted", 7, 13),
        Token("members", 15, 22),
    ]


def test_tokenize_case_folds_normalises_and_keeps_combining_marks() -> None:
    decomposed = "Cafe\u0301"  # e + COMBINING ACUTE ACCENT
    text = f"STRASSE Straße {decomposed} हिन्दी ＡＢＣ"
    tokens = tokenize(text)
    assert [t.norm for t in tokens] == ["strasse", "strasse", "café", "हिन्दी", "abc"]
    # Offsets are into the original string, marks included.
    assert text[tokens[2].start : tokens[2].end] == decomposed
    assert text[tokens[3].start : tokens[3].end] == "हिन्दी"


def test_tokenize_without_words() -> None:
    assert tokenize("") == []
    assert tokenize(" ... — !? ") == []


def test_shingles() -> None:
    assert shingles("The cat sat, on the MAT.") == {
        ("the", "cat", "sat"),
        ("cat", "sat", "on"),
        ("sat", "on", "the"),
        ("on", "the", "mat"),
    }
    assert shingles("Yes!") == {("yes",)}
    assert shingles("Paris, France") == {("paris", "france")}
    assert shingles("  ") == set()
    assert shingles("go go go go") == {("go", "go", "go")}


# -- highlight_agreement -----------------------------------------------------------------------


def test_highlight_agreement_three_members_exact_spans() -> None:
    spans = highlight_agreement(SKY)
    assert spans == {
        "a#1": [
            Span(0, 15, "shared", ["b#1", "c#1"]),
            Span(17, 27, "shared", ["b#1"]),
            Span(28, 47, "unique", []),
        ],
        "b#1": [
            Span(0, 15, "shared", ["a#1", "c#1"]),
            Span(16, 26, "shared", ["a#1"]),
            Span(27, 37, "unique", []),
        ],
        "c#1": [
            Span(0, 17, "unique", []),
            Span(20, 35, "shared", ["a#1", "b#1"]),
        ],
    }
    covered = {key: [SKY[key][s.start : s.end] for s in value] for key, value in spans.items()}
    assert covered == {
        "a#1": ["The Sky is blue", "because of", "Rayleigh scattering"],
        "b#1": ["the sky is BLUE", "because of", "scattering"],
        "c#1": ["Café au lait? Oui", "the sky is blue"],
    }
    # Leading and trailing punctuation stays uncovered.
    assert SKY["a#1"][47:] == "!" and SKY["c#1"][35:] == "."
    _check_offsets(SKY, spans)


def test_highlight_agreement_case_and_unicode_offsets() -> None:
    texts = {
        "de#1": "🙂 Grüße aus Köln!",
        "de#2": "GRÜSSE AUS KÖLN",
        "x#1": "Grüße aus Berlin",
    }
    spans = highlight_agreement(texts)
    assert spans == {
        "de#1": [Span(2, 16, "shared", ["de#2"])],
        "de#2": [Span(0, 15, "shared", ["de#1"])],
        "x#1": [Span(0, 16, "unique", [])],
    }
    assert texts["de#1"][2:16] == "Grüße aus Köln"
    _check_offsets(texts, spans)


def test_highlight_agreement_repeated_words() -> None:
    # Repetition inside one text never makes it shared; across texts it does.
    texts = {"a": "go go go go", "b": "Stop. Stop, stop!", "c": "STOP stop stop"}
    assert highlight_agreement(texts) == {
        "a": [Span(0, 11, "unique", [])],
        "b": [Span(0, 16, "shared", ["c"])],
        "c": [Span(0, 14, "shared", ["b"])],
    }


def test_highlight_agreement_shared_with_changes_split_spans() -> None:
    texts = {
        "a": "one two three four five",
        "b": "one two three",
        "c": "three four five",
    }
    # one/two: only in b's 3-gram; three: in b's and c's; four/five: only in c's.
    assert highlight_agreement(texts)["a"] == [
        Span(0, 7, "shared", ["b"]),
        Span(8, 13, "shared", ["b", "c"]),
        Span(14, 23, "shared", ["c"]),
    ]


def test_highlight_agreement_short_texts() -> None:
    texts = {"a": "Yes!", "b": " yes", "c": "No.", "d": "Paris, France", "e": "paris france"}
    assert highlight_agreement(texts) == {
        "a": [Span(0, 3, "shared", ["b"])],
        "b": [Span(1, 4, "shared", ["a"])],
        "c": [Span(0, 2, "unique", [])],
        "d": [Span(0, 13, "shared", ["e"])],
        "e": [Span(0, 12, "shared", ["d"])],
    }
    # A short text never matches a longer one, even when it is its beginning.
    assert highlight_agreement({"a": "the sky", "b": "the sky is blue"}) == {
        "a": [Span(0, 7, "unique", [])],
        "b": [Span(0, 15, "unique", [])],
    }


def test_highlight_agreement_empty_and_single() -> None:
    assert highlight_agreement({}) == {}
    assert highlight_agreement({"a": "", "b": "?!", "c": "the sky is blue"}) == {
        "a": [],
        "b": [],
        "c": [Span(0, 15, "unique", [])],
    }
    assert highlight_agreement({"only": "the sky is blue"}) == {"only": [Span(0, 15, "unique", [])]}


def test_span_to_dict() -> None:
    assert Span(1, 4, "shared", ["b"]).to_dict() == {
        "start": 1,
        "end": 4,
        "kind": "shared",
        "shared_with": ["b"],
        "area": None,
    }
    assert Span(0, 2, "refinement", area=3).to_dict() == {
        "start": 0,
        "end": 2,
        "kind": "refinement",
        "shared_with": [],
        "area": 3,
    }


# -- consensus -----------------------------------------------------------------------------------


def test_consensus_identical_and_disjoint() -> None:
    assert consensus({"a": "The sky is blue.", "b": "the SKY is blue"}) == 1.0
    assert consensus({"a": "The sky is blue.", "b": "Grass is green."}) == 0.0
    assert consensus({"a": "yes", "b": "Yes!"}) == 1.0
    assert consensus({"a": "yes", "b": "no"}) == 0.0


def test_consensus_partial_overlap_exact_fraction() -> None:
    texts = {"a": "the cat sat on the mat", "b": "the cat sat on a rug"}
    # Shared: (the cat sat), (cat sat on); union: 4 + 4 - 2 = 6.
    assert pairwise_agreement(texts) == {("a", "b"): pytest.approx(1 / 3, abs=1e-15)}
    assert consensus(texts) == pytest.approx(1 / 3, abs=1e-15)


def test_consensus_three_members_is_mean_of_pairs() -> None:
    pairs = pairwise_agreement(SKY)
    # a: 6 shingles, b: 5, c: 6; a∩b = 4, a∩c = 2, b∩c = 2.
    expected = {
        ("a#1", "b#1"): Fraction(4, 7),
        ("a#1", "c#1"): Fraction(2, 10),
        ("b#1", "c#1"): Fraction(2, 9),
    }
    assert list(pairs) == list(expected)
    for key, value in expected.items():
        assert pairs[key] == pytest.approx(float(value), abs=1e-15)
    mean = sum(expected.values(), Fraction(0)) / 3
    assert consensus(SKY) == pytest.approx(float(mean), abs=1e-15)


def test_consensus_undefined_with_fewer_than_two_texts() -> None:
    assert consensus({}) is None
    assert consensus({"a": "the sky is blue"}) is None
    assert consensus({"a": "the sky is blue", "b": "", "c": "—"}) is None
    assert pairwise_agreement({"a": "the sky is blue", "b": "  "}) == {}
    # Empty texts take no part in the mean.
    assert consensus({"a": "the sky is blue", "b": "", "c": "The sky is blue!"}) == 1.0


# -- refinement areas ----------------------------------------------------------------------------


def test_highlight_refinement_areas() -> None:
    synthesis = "Costs matter: the cost model (Cost) ignores latency."
    areas = ["the cost of the model", "Latency and COST", "a an", "AI in UI"]
    spans = highlight_refinement_areas(synthesis, areas)
    assert spans == [
        Span(18, 22, "refinement", area=0),
        Span(23, 28, "refinement", area=0),
        Span(30, 34, "refinement", area=0),
        Span(44, 51, "refinement", area=1),
    ]
    assert [synthesis[s.start : s.end] for s in spans] == ["cost", "model", "Cost", "latency"]
    # "Costs" is not "cost" (whole words, no stemming); "the" is a stop word.


def test_highlight_refinement_areas_edge_cases() -> None:
    assert highlight_refinement_areas("anything at all", []) == []
    assert highlight_refinement_areas("", ["cost"]) == []
    # Words of fewer than three characters and stop words never match.
    assert highlight_refinement_areas("It is an AI.", ["it is an AI"]) == []
    # Word boundaries: "art" does not match inside "start"; Unicode case-insensitive.
    text = "Start the ÉTUDE; art."
    assert highlight_refinement_areas(text, ["Art", "étude"]) == [
        Span(10, 15, "refinement", area=1),
        Span(17, 20, "refinement", area=0),
    ]


# -- word frequencies ----------------------------------------------------------------------------


def test_word_frequencies_removes_stop_words() -> None:
    text = "The cat and the CAT. A dog's dog; the dogs? 42 42 42. It's what it is."
    assert word_frequencies(text) == [
        ("42", 3),
        ("cat", 2),
        ("dog", 1),
        ("dog's", 1),
        ("dogs", 1),
    ]
    assert word_frequencies(text, top=2) == [("42", 3), ("cat", 2)]
    assert word_frequencies(text, top=0) == []
    assert word_frequencies("") == []
    with pytest.raises(ValueError):
        word_frequencies(text, top=-1)


def test_stop_words_are_normalised() -> None:
    assert "the" in STOP_WORDS and "it's" in STOP_WORDS
    assert all(word == word.casefold() and "’" not in word for word in STOP_WORDS)
    # A curly apostrophe normalises to a straight one, so "It’s" is a stop word too.
    assert word_frequencies("It’s blue") == [("blue", 1)]


# -- member texts --------------------------------------------------------------------------------


def test_member_texts() -> None:
    members = [
        MemberResult(model="m", instance=1, iteration=1, status="done", answer="A", text="raw"),
        MemberResult(model="m", instance=2, iteration=1, status="failed", text="partial"),
        MemberResult(model="n", instance=1, iteration=1, status="done", text="raw only"),
    ]
    assert member_texts(members) == {"m#1": "A", "n#1": "raw only"}
    assert member_key("gpt-4o", 2) == "gpt-4o#2"
