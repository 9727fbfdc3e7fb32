"""The config model, model:count parsing, validation messages, and the saved-config store."""

from __future__ import annotations

import json
import sqlite3
import warnings

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from consortium_lab import configs
from consortium_lab.apps.cli import main as cli_main
from consortium_lab.config.consortium import (
    ConfigWarning,
    ConsortiumConfig,
    check_models,
    parse_model_spec,
)
from consortium_lab.paths import upstream_db_path

from fake_openai import ModelScript


def test_model_count_suffix_rules():
    assert parse_model_spec("gpt-4o:2") == ("gpt-4o", 2)
    assert parse_model_spec("llama3.2:3b") == ("llama3.2:3b", 1)
    assert parse_model_spec("phi:2", known=["phi:2"]) == ("phi:2", 1)
    assert parse_model_spec("plain") == ("plain", 1)
    with pytest.raises(ValueError, match="at least 1"):
        parse_model_spec("gpt-4o:0")


def test_models_list_merges_counts():
    config = ConsortiumConfig(models=["a:2", "b", "a"])
    assert config.models == {"a": 3, "b": 1}
    assert config.members() == [("a", 1), ("a", 2), ("a", 3), ("b", 1)]


@pytest.mark.parametrize(
    ("settings", "field", "bad"),
    [
        ({"models": {}}, "models", "{}"),
        ({"models": {"a": 0}}, "models", "0"),
        ({"models": {"a": 1}, "max_iterations": 0}, "max_iterations", "0"),
        ({"models": {"a": 1}, "minimum_iterations": 0}, "minimum_iterations", "0"),
        ({"models": {"a": 1}, "confidence_threshold": 150}, "confidence_threshold", "150"),
        ({"models": {"a": 1}, "confidence_threshold": -0.1}, "confidence_threshold", "-0.1"),
        ({"models": {"a": 1}, "judging_method": "vote"}, "judging_method", "vote"),
        ({"models": {"a": 1}, "mode": "debate"}, "mode", "debate"),
    ],
)
def test_validation_names_field_and_value(settings, field, bad):
    with pytest.raises(ValidationError) as info:
        ConsortiumConfig(**settings)
    text = str(info.value)
    assert field in text and bad in text


def test_minimum_above_maximum_is_an_error():
    with pytest.raises(ValidationError, match=r"minimum_iterations \(4\).*max_iterations \(2\)"):
        ConsortiumConfig(models={"a": 1}, minimum_iterations=4, max_iterations=2)


def test_threshold_percent_rule_warns():
    with pytest.warns(ConfigWarning, match="confidence_threshold"):
        config = ConsortiumConfig(models={"a": 1}, confidence_threshold=85)
    assert config.confidence_threshold == pytest.approx(0.85)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ConsortiumConfig(models={"a": 1}, confidence_threshold=1).confidence_threshold == 1


def test_upstream_config_round_trip_keeps_unknown_keys():
    from llm_consortium import ConsortiumConfig as Upstream

    upstream = Upstream(models={"a": 2}, arbiter="b", confidence_threshold=0.7, category="x")
    ours = ConsortiumConfig.from_dict(upstream.to_dict())
    assert ours.models == {"a": 2} and ours.arbiter == "b"
    assert ours.to_dict()["category"] == "x"
    back = Upstream.from_dict(ours.to_dict())
    assert back.models == {"a": 2} and back.confidence_threshold == 0.7


def test_saved_consortiums_are_never_members(fake_openai):
    fake_openai.add_model("m1", ModelScript())
    configs.save("team", ConsortiumConfig(models={"m1": 1}, arbiter="m1"))
    import llm

    assert "team" in [m.model_id for m in llm.get_models()]  # upstream registers it
    with pytest.raises(ValueError, match="team"):
        check_models(ConsortiumConfig(models={"team": 1}, arbiter="m1"))


def test_store_round_trip_and_shared_with_upstream(fake_openai):
    fake_openai.add_model("m1", ModelScript())
    config = ConsortiumConfig(models={"m1": 2}, arbiter="m1", mode="council")
    configs.save("mine", config)
    assert configs.get("mine") == config
    # upstream reads it from its own table
    from llm_consortium.models import _get_consortium_configs

    assert _get_consortium_configs()["mine"].models == {"m1": 2}
    # and ours lists what upstream saves
    from llm_consortium.models import ConsortiumConfig as Upstream
    from llm_consortium.models import _save_consortium_config

    _save_consortium_config("theirs", Upstream(models={"m1": 1}, arbiter="m1"))
    assert {s.name for s in configs.list()} >= {"mine", "theirs"}
    configs.clone("mine", "copy")
    assert configs.get("copy") == config
    with pytest.raises(ValueError, match="already exists"):
        configs.clone("mine", "copy")
    exported = configs.export(["mine"])
    configs.remove("mine")
    with pytest.raises(KeyError, match="mine"):
        configs.get("mine")
    assert configs.import_json(exported) == ["mine"]
    assert configs.get("mine") == config
    with pytest.raises(ValueError, match="already exists"):
        configs.import_json(exported)


def test_invalid_rows_are_listed_and_flagged_never_raise(fake_openai):
    db = sqlite3.connect(upstream_db_path())
    configs.list()  # creates the table
    db.execute(
        "INSERT INTO consortium_configs (name, config) VALUES (?, ?)",
        ["broken", json.dumps({"models": {"x": 0}})],
    )
    db.execute("INSERT INTO consortium_configs (name, config) VALUES (?, ?)", ["junk", "{not json"])
    db.commit()
    listed = {s.name: s for s in configs.list()}
    assert not listed["broken"].ok and "models" in listed["broken"].error
    assert not listed["junk"].ok and "JSON" in listed["junk"].error
    with pytest.raises(ValueError, match="invalid"):
        configs.get("broken")
    result = CliRunner().invoke(cli_main, ["configs", "list"])
    assert result.exit_code == 0 and "broken  INVALID" in result.output


def test_bad_names_and_imports_are_clear_errors(fake_openai):
    with pytest.raises(ValueError, match="name"):
        configs.save("has space", ConsortiumConfig(models={"a": 1}))
    with pytest.raises(ValueError, match="not valid JSON"):
        configs.import_json("{")
    with pytest.raises(ValueError, match="invalid"):
        configs.import_json(json.dumps({"configs": {"x": {"models": {}}}}))
    assert configs.list() == []  # nothing half-imported


def test_unknown_setting_is_refused_with_a_suggestion(fake_openai):
    from consortium_lab import Consortium

    with pytest.raises(ValidationError, match=r"max_iteration: unknown setting.*'max_iterations'"):
        ConsortiumConfig(models={"a": 1}, max_iteration=5)
    fake_openai.add_model("a", ModelScript())
    with pytest.raises(ValueError, match="max_iteration: unknown setting"):
        Consortium(models=["a"], max_iteration=5, store=False)
    # a stored row may carry keys of a newer llm-consortium: kept, not refused
    stored = ConsortiumConfig.from_dict({"models": {"a": 1}, "future_key": 1, "category": "x"})
    assert stored.to_dict()["future_key"] == 1
    assert Consortium(stored, store=False).config.to_dict()["future_key"] == 1


def test_saved_config_without_arbiter_gets_the_first_member(fake_openai):
    fake_openai.add_model("m1", ModelScript())
    saved = configs.save("solo", ConsortiumConfig(models={"m1": 2}))
    assert saved.config is not None and saved.config.arbiter == "m1"
    import llm

    assert "solo" in [m.model_id for m in llm.get_models()]  # upstream registered it


def test_event_schema_file_is_current():
    from pathlib import Path

    from consortium_lab.engine.events import event_json_schema

    path = Path(__file__).resolve().parent.parent / "docs" / "events.schema.json"
    assert json.loads(path.read_text()) == event_json_schema(), (
        "docs/events.schema.json is stale: regenerate it as docs/events.md says"
    )
