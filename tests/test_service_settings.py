"""The gateway service's settings as a traitlets ``Configurable``: ``--help-all``, the generated
Python config file, YAML/JSON/Python settings files, errors that name the setting; and the
service's model discovery through the model catalog."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from traitlets.config.loader import PyFileConfigLoader

from consortium_lab.apps.cli import main
from consortium_lab.config import catalog
from consortium_lab.config.consortium import Limits
from consortium_lab.gateway.quotas import QuotaPolicy
from consortium_lab.service.discovery import discover_models
from consortium_lab.service.settings import ServiceSettings, SettingsError
from consortium_lab.service.settings_docs import generate_config

from fake_openai import ModelScript

TRAITS = ServiceSettings.class_traits(config=True)


def words(text: str) -> str:
    """Whitespace and comment marks folded, so wrapped help compares with the original."""
    lines = (re.sub(r"^\s*#+", "", line) for line in text.splitlines())
    return " ".join(" ".join(lines).split())


def defaults() -> dict[str, object]:
    fresh = ServiceSettings()
    return {name: getattr(fresh, name) for name in TRAITS}


def test_help_all_lists_every_setting_with_its_help_and_default():
    result = CliRunner().invoke(main, ["gateway", "--help-all"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "--generate-config" in out and "--help-settings" in out  # the command's own help
    blocks = out.split("\nc.ServiceSettings.")[1:]
    assert [block.split(" ", 1)[0] for block in blocks] == ServiceSettings.names()
    for block in blocks:
        name = block.split(" ", 1)[0]
        trait = TRAITS[name]
        assert words(trait.help) in words(block), name
        assert f"Default: {trait.default_value_repr()}" in block, name
    assert "Choices: any of ['least-busy', 'lowest-latency']" in out


def test_generated_config_is_python_that_gives_the_defaults(tmp_path):
    target = tmp_path / "gateway_config.py"
    runner = CliRunner()
    result = runner.invoke(main, ["gateway", f"--generate-config={target}"])
    assert result.exit_code == 0, result.output
    text = target.read_text()
    assert text.startswith("# Configuration file for consortium-lab gateway.")
    for name, trait in TRAITS.items():
        assert f"# c.ServiceSettings.{name} = " in text
        assert words(trait.help) in words(text), name
    # As written (every setting commented out): a valid config file that changes nothing.
    config = PyFileConfigLoader(target.name, str(tmp_path)).load_config()
    assert dict(config.get("ServiceSettings", {})) == {}
    assert {n: getattr(ServiceSettings(config=config), n) for n in TRAITS} == defaults()
    # Every line uncommented: each default is written as Python that reads back as itself.
    live = tmp_path / "all_set.py"
    live.write_text(re.sub(r"^# (c\.ServiceSettings\.)", r"\1", text, flags=re.M))
    assert set(
        PyFileConfigLoader(live.name, str(tmp_path)).load_config()["ServiceSettings"]
    ) == set(TRAITS)
    assert {n: getattr(ServiceSettings.load(live), n) for n in TRAITS} == defaults()
    # Never overwrites; '-' prints it.
    again = runner.invoke(main, ["gateway", f"--generate-config={target}"])
    assert again.exit_code != 0 and "already exists" in again.output
    printed = runner.invoke(main, ["gateway", "--generate-config=-"])
    assert printed.exit_code == 0 and printed.output.strip() == generate_config().strip()


def test_python_config_file_sets_values_and_resolves_relative_paths(tmp_path):
    config = tmp_path / "conf" / "gateway_config.py"
    config.parent.mkdir()
    config.write_text(
        "c = get_config()  # noqa\n"
        "c.ServiceSettings.port = 9100\n"
        "c.ServiceSettings.ledger = 'state/ledger.db'\n"
        "c.ServiceSettings.limits = {'max_output_tokens': 100}\n"
        "c.ServiceSettings.quotas = {'group:staff': {'tokens_per_day': 5000}}\n"
        "c.ServiceSettings.log_level = 'debug'\n"
    )
    settings = ServiceSettings.load(config, {"host": "::1"})
    assert (settings.port, settings.host, settings.log_level) == (9100, "::1", "DEBUG")
    assert settings.ledger_path() == config.parent / "state" / "ledger.db"
    assert settings.limits == Limits(max_output_tokens=100)
    assert settings.baseline_quotas() == {"group:staff": QuotaPolicy(tokens_per_day=5000)}
    config.write_text("c = get_config()  # noqa\nc.ServiceSettings.prot = 1\n")
    with pytest.raises(SettingsError, match=r"^prot: unknown setting"):
        ServiceSettings.load(config)
    config.write_text("c = get_config()  # noqa\nc.Gateway.port = 1\n")
    with pytest.raises(ValueError, match=r"only c\.ServiceSettings is read \(found c\.Gateway\)"):
        ServiceSettings.load(config)
    config.write_text("c = get_config()  # noqa\nraise RuntimeError('boom')\n")
    with pytest.raises(ValueError, match="could not run the config file: boom"):
        ServiceSettings.load(config)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_yaml_and_json_settings_files_still_load(tmp_path, suffix):
    data = {
        "models": ["gpt-*"],
        "groups": {"fast": ["a", "b"]},
        "model_settings": {"a": {"cache": False, "concurrency": 2}},
        "default_quota": {"requests_per_minute": 3},
        "acl": {"*": ["gpt-*"], "user:root": ["*"]},
        "cache": "answers",
        "timeout": 30,
        "cache_ttl": None,
    }
    path = tmp_path / f"gateway{suffix}"
    path.write_text(yaml.safe_dump(data) if suffix == ".yaml" else json.dumps(data))
    settings = ServiceSettings.load(path)
    assert settings.models == ["gpt-*"] and settings.groups == {"fast": ["a", "b"]}
    assert settings.model_settings["a"].concurrency == 2
    assert settings.model_settings["a"].cache is False
    assert settings.default_quota == QuotaPolicy(requests_per_minute=3)
    assert settings.acl == {"*": ["gpt-*"], "user:root": ["*"]}
    assert settings.cache_spec() == str(tmp_path / "answers")
    assert settings.timeout == 30.0 and settings.cache_ttl is None


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"port": "http"}, "port"),
        ({"port": 70000}, "port"),
        ({"retries": -1}, "retries"),
        ({"timeout": 0}, "timeout"),
        ({"routing": "random"}, "routing"),
        ({"auth": "ldap"}, "auth"),
        ({"limits": {"total_timeout": 0}}, "limits.total_timeout"),
        ({"model_settings": {"m": {"concurrency": "many"}}}, "model_settings['m'].concurrency"),
        ({"quotas": {"group:x": {"tokens_per_day": -3}}}, "quotas['group:x'].tokens_per_day"),
        ({"quotas": {"default": {}}}, "quotas"),
        ({"acl": {"everyone": ["*"]}}, "acl"),
        ({"log_level": "loud"}, "log_level"),
        ({"ledger": 5}, "ledger"),
        ({"max_request_bytes": 10}, "max_request_bytes"),
        ({"shared_cache": "perhaps"}, "shared_cache"),
    ],
)
def test_bad_values_give_an_error_naming_the_setting(data, named):
    with pytest.raises(SettingsError) as info:
        ServiceSettings.from_dict(data)
    assert str(info.value).startswith(f"{named}: ")
    assert info.value.name == next(iter(data))


def test_secret_settings_never_appear_in_errors_or_help(tmp_path, monkeypatch):
    with pytest.raises(SettingsError, match=r"^admin_tokens: ") as info:
        ServiceSettings.from_dict({"admin_tokens": {"supersecret-token": 1}})
    assert "supersecret" not in str(info.value)
    with pytest.raises(SettingsError, match=r"^hub_api_token: ") as info:
        ServiceSettings.from_dict({"hub_api_token": ["supersecret-token"]})
    assert "supersecret" not in str(info.value)
    monkeypatch.setenv("CONSORTIUM_GATEWAY_ADMIN_TOKENS", "env-one env-two")
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"admin_tokens": ["file-token"]}))
    assert ServiceSettings.load(path).admin_tokens == ["file-token", "env-one", "env-two"]


def test_cli_reports_a_bad_setting_by_name_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"cooldown_after": 0}))
    result = CliRunner().invoke(main, ["gateway", "--config", str(bad)])
    assert result.exit_code != 0
    assert "invalid gateway settings: cooldown_after: " in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_discovery_goes_through_the_catalog(fake_openai):
    fake_openai.add_model("m1", ModelScript(reply="x"), aliases=["first"])
    fake_openai.add_model("m2", ModelScript(reply="y"))
    fake_openai.add_model("hidden", ModelScript(reply="z"))
    options, options_class = catalog.model_options("m1")
    assert {"temperature", "max_tokens"} <= options and options_class is not None
    assert catalog.model_options("no-such-model") == (frozenset(), None)
    settings = ServiceSettings(
        models=["m*", "hidden", "pool"],
        exclude_models=["hidden"],
        groups={"pool": ["m1", "m2", "absent"], "empty": ["absent"]},
    )
    offered = discover_models(settings)
    assert offered.ids == ("m1", "m2", "pool")
    assert offered.names["first"] == "m1" and offered.names["pool"] == "pool"
    assert offered.options["pool"] == options & catalog.model_options("m2")[0]
    assert "demo-analyst" not in offered.names  # the offline demo models are excluded by default


def test_the_docs_settings_table_matches_the_traits():
    docs = Path(__file__).parents[1] / "docs" / "gateway-service.md"
    rows = [line for line in docs.read_text().splitlines() if line.startswith("| `")]
    table = {row.split("`")[1]: row for row in rows}
    for name in ServiceSettings.names():
        trait = TRAITS[name]
        assert name in table, f"docs/gateway-service.md lacks {name}"
        assert f"| `{trait.default_value_repr()}` | {trait.help.replace('|', '/')} |" in table[name]


def test_discovery_asks_llm_s_plugins_a_fixed_number_of_times(fake_openai, monkeypatch):
    """Re-reading the offer (every ``models_refresh``) costs the same passes over llm's plugins
    however many models are offered, and gives each model the options a look-up gives."""
    import llm

    passes: list[str] = []
    for name in ("get_models", "get_async_models", "get_models_with_aliases"):
        real = getattr(llm, name)
        monkeypatch.setattr(llm, name, lambda real=real, name=name: passes.append(name) or real())
    settings = ServiceSettings(models=["m*"])
    counts = []
    for n in range(8):
        fake_openai.add_model(f"m{n}", ModelScript(reply="x"))
        if n in (1, 7):
            passes.clear()
            offered = discover_models(settings)
            counts.append(len(passes))
    assert offered.ids == tuple(f"m{n}" for n in range(8))
    assert counts[0] == counts[1] > 0, counts
    for n in range(8):
        model = f"m{n}"
        assert (offered.options[model], offered.options_class[model]) == catalog.model_options(
            model
        )
