"""A refused setting is told in plain words (``widget.settings.plain_error``): what a valid
value is, with none of pydantic's text; through the page's ``set_config`` the config in effect
is unchanged and the refusal is not the chat's error (the page shows it at its field)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from consortium_lab.config.consortium import ConsortiumConfig
from consortium_lab.widget.settings import plain_error

pytest.importorskip("anywidget")

from test_widget import make_widget

BASE = {"models": {"a": 1, "b": 1}, "arbiter": "judge"}
THRESHOLD = "Threshold must be between 0 and 1, or a percentage up to 100"
WHOLE = "must be a whole number of at least 1"
PYDANTIC_WORDS = (
    "Value error",
    "input_value",
    "input_type",
    "[type=",
    "pydantic",
    "validation error",
)

BAD_VALUES = [
    ({"confidence_threshold": -0.1}, THRESHOLD),
    ({"confidence_threshold": 101}, THRESHOLD),
    ({"confidence_threshold": "high"}, THRESHOLD),
    ({"confidence_threshold": float("nan")}, THRESHOLD),
    ({"confidence_threshold": True}, THRESHOLD),
    ({"max_iterations": 0}, f"Maximum iterations {WHOLE}"),
    ({"max_iterations": 2.5}, f"Maximum iterations {WHOLE}"),
    ({"max_iterations": "many"}, f"Maximum iterations {WHOLE}"),
    ({"minimum_iterations": -1}, f"Minimum iterations {WHOLE}"),
    ({"minimum_iterations": 1.5}, f"Minimum iterations {WHOLE}"),
    (
        {"minimum_iterations": 4, "max_iterations": 2},
        "Minimum iterations (4) cannot be more than maximum iterations (2)",
    ),
    ({"models": {}}, "Members need at least one model"),
    ({"models": {"a": 0}}, "Members need at least one model, each with a count of at least 1"),
    ({"mode": "debate"}, "Mode must be consortium, council or compare"),
    ({"system_prompt": 5}, "System prompt must be text"),
    ({"stream_individual_responses": "sometimes"}, "Streaming must be on or off"),
    ({"arbiter_options": [1]}, "Arbiter options must be a JSON object"),
]


@pytest.mark.parametrize(("change", "expected"), BAD_VALUES, ids=lambda v: repr(v)[:40])
def test_every_bad_value_in_plain_words(change, expected):
    with pytest.raises(ValidationError) as info:
        ConsortiumConfig.model_validate({**BASE, **change})
    text = plain_error(info.value)
    assert text.startswith(expected), text
    assert not any(word in text for word in PYDANTIC_WORDS), text


def test_unknown_setting_keeps_its_hint_without_pydantic_text():
    with pytest.raises(ValidationError) as info:
        ConsortiumConfig.model_validate({**BASE, "max_iteration": 2})
    text = plain_error(info.value)
    assert "max_iteration: unknown setting; did you mean 'max_iterations'" in text
    assert not any(word in text for word in PYDANTIC_WORDS), text


def test_other_errors_keep_their_message():
    assert plain_error(ValueError("models: 'x' is not installed")) == "models: 'x' is not installed"
    assert plain_error(KeyError("no such config")) == "no such config"


@pytest.mark.parametrize(("change", "expected"), BAD_VALUES[:11], ids=lambda v: repr(v)[:40])
def test_set_config_refusal_is_plain_and_changes_nothing(
    fake_openai, monkeypatch, tmp_path, change, expected
):
    for name in ("a", "b", "judge"):
        fake_openai.add_model(name)
    widget, capture = make_widget(monkeypatch, tmp_path, config=BASE)
    before = widget.config
    if any(v != v for v in change.values()):  # NaN cannot travel as JSON; the page sends null
        change = {k: None for k in change}
        expected = THRESHOLD
    widget.handle_message({"type": "set_config", "config": change, "merge": True, "req": "s-1"})
    notice = capture.of("notice")[-1]
    assert notice["level"] == "error" and notice["req"] == "s-1"
    assert notice["message"].startswith(expected), notice
    assert not any(word in notice["message"] for word in PYDANTIC_WORDS), notice
    assert widget.config == before and widget.error == ""
