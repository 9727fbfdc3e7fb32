"""The chat widget's one message schema, and the parser cases the front end shares.

* ``widgets/messages.schema.json`` and ``widgets/src/messages.gen.ts`` are what
  ``widgets/gen_messages.py`` writes from the pydantic models now;
* the kernel's messages validate against the committed schema (every message sent in
  ``tests/test_widget.py`` is checked by its ``Capture``; here a fixture of real ones, which
  vitest parses too);
* the page's messages the pydantic models accept are the ones the schema accepts;
* ``widgets/test/fixtures/parsers.json`` holds the cases of ``splitStreaming`` and
  ``parseModelSpec``, run here against the Python functions they mirror.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("anywidget")
pytest.importorskip("jsonschema")

import jsonschema
from pydantic import ValidationError

from consortium_lab.config.consortium import parse_models
from consortium_lab.prompts.parsing import parse_member_response
from consortium_lab.widget import messages

ROOT = Path(__file__).resolve().parents[1]
WIDGETS = ROOT / "widgets"
FIXTURES = WIDGETS / "test" / "fixtures"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_messages", WIDGETS / "gen_messages.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def schema_validator(definition: str) -> Any:
    """A validator of the committed schema's ``$defs[definition]``."""
    schema = json.loads((WIDGETS / "messages.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator({**schema, "$ref": f"#/$defs/{definition}"})


def test_generated_files_are_current():
    for path, text in _generator().render().items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is out of date: run python widgets/gen_messages.py"
        )


def test_schema_lists_every_message_and_trait():
    schema = json.loads((WIDGETS / "messages.schema.json").read_text(encoding="utf-8"))
    defs = schema["$defs"]
    for model in [*messages.FRONTEND_TYPES.values(), *messages.KERNEL_TYPES.values()]:
        assert model.__name__ in defs
    from consortium_lab.widget.chat import ChatWidget

    traits = {n for n in ChatWidget.class_traits(sync=True) if n in ChatWidget.__dict__}
    assert set(defs["ChatModel"]["properties"]) == traits
    assert defs["ChatModel"]["properties"]["status"]["enum"] == ["idle", "running", "cancelling"]


def test_kernel_message_fixture_is_python_made_and_valid():
    """Each sample (captured from a demo session) is what the models dump, and fits the
    committed schema; together they cover every kernel message type."""
    samples = json.loads((FIXTURES / "kernel_messages.json").read_text(encoding="utf-8"))
    validator = schema_validator("KernelMessage")
    for sample in samples:
        model = messages.KERNEL_MESSAGE.validate_python(sample)
        assert model.model_dump(mode="json", exclude_unset=True) == sample
        validator.validate(sample)
    assert {s["type"] for s in samples} == set(messages.KERNEL_TYPES)


@pytest.mark.parametrize(
    ("message", "valid"),
    [
        ({"type": "ask", "prompt": "Hi", "req": "r1"}, True),
        ({"type": "set_config", "config": {"max_iterations": 2}, "merge": True}, True),
        ({"type": "export", "id": "run-1", "format": "markdown"}, True),
        ({"type": "ready"}, True),
        ({"type": "ask"}, False),  # no prompt
        ({"type": "ask", "prompt": "Hi", "promt": "typo"}, False),  # unknown field
        ({"type": "export", "id": "run-1", "format": "pdf"}, False),
        ({"type": "set_config", "config": "not an object"}, False),
        ({"type": "nonsense"}, False),
    ],
)
def test_schema_and_models_agree_on_page_messages(message, valid):
    validator = schema_validator("FrontendMessage")
    assert validator.is_valid(message) is valid
    try:
        messages.FRONTEND_MESSAGE.validate_python(message)
    except ValidationError:
        assert not valid
    else:
        assert valid


def _parser_cases(name: str) -> list[dict[str, Any]]:
    cases = json.loads((FIXTURES / "parsers.json").read_text(encoding="utf-8"))[name]
    return [c for c in cases if not c.get("streaming")]


@pytest.mark.parametrize("case", _parser_cases("splitStreaming"), ids=lambda c: c["raw"][:30])
def test_split_streaming_cases_match_the_member_parser(case):
    parsed = parse_member_response(case["raw"])
    assert (parsed.thought_process, parsed.answer) == (case["thought"], case["answer"])


@pytest.mark.parametrize("case", _parser_cases("parseModelSpec"), ids=lambda c: c["spec"])
def test_parse_model_spec_cases_match_parse_models(case):
    specs = [s.strip() for s in re.split(r"[,\n]", case["spec"]) if s.strip()]
    assert parse_models(specs, known=case["known"]) == case["models"]
