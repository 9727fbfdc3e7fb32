"""hub/k8s/: the Zero to JupyterHub values against the chart's schema and the real classes'
traits, and the gateway and Redis manifests against each other and the values."""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import k8s_traits

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "hub" / "k8s"
IMAGE_PREFIX = "/opt/consortium"
IMAGE_SITE = f"{IMAGE_PREFIX}/lib/python3.11/site-packages"
SECRET_WORDS = ("TOKEN", "PASSWORD", "SECRET", "KEY", "AUTH")
MANIFESTS = ("gateway.yaml", "redis.yaml", "analytics.yaml")


def load(name: str) -> Any:
    return yaml.safe_load((K8S / name).read_text())


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def chart_schema() -> Path:
    """The chart's values schema, copied unchanged into ``tests/data/z2jh/`` (its README names
    the chart commit) so the check runs on every clean clone."""
    return ROOT / "tests" / "data" / "z2jh" / "values.schema.yaml"


def merged(defaults: Any, ours: Any) -> Any:
    """``ours`` over the chart's ``defaults`` as helm merges values: maps key by key, anything
    else replaced."""
    if isinstance(defaults, dict) and isinstance(ours, dict):
        out = dict(defaults)
        for key, value in ours.items():
            out[key] = merged(defaults.get(key), value)
        return out
    return ours


def schema_errors(values: dict[str, Any]) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema")
    schema_path = chart_schema()
    validator = jsonschema.Draft7Validator(yaml.safe_load(schema_path.read_text()))
    defaults = yaml.safe_load((schema_path.parent / "values.yaml").read_text())
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(merged(defaults, values))
    ]


def test_values_validate_against_the_charts_schema() -> None:
    assert schema_errors(load("values.yaml")) == []


def test_the_schema_check_would_catch_a_wrong_key() -> None:
    values = load("values.yaml")
    values["singleuser"]["storage"]["capacty"] = "2Gi"
    assert any("capacty" in e for e in schema_errors(values))


def pinned_check(items: list[tuple[str, str, Any, str]]) -> list[str]:
    """The problems the chart's pinned classes find (tests/k8s_traits.py), after checking that
    they are the pinned versions and not this environment's."""
    result = k8s_traits.check(ROOT, items)
    assert result["versions"] == k8s_traits.PINS
    problems: list[str] = result["problems"]
    return problems


def test_every_hub_config_key_is_a_trait_that_takes_its_value() -> None:
    config = load("values.yaml")["hub"]["config"]
    items = [
        (name, key, value, f"hub.config.{name}.{key}")
        for name, section in config.items()
        for key, value in section.items()
    ]
    assert pinned_check(items) == []


def test_every_kubespawner_override_is_a_trait_that_takes_its_value() -> None:
    profiles = load("values.yaml")["singleuser"]["profileList"]
    items = [
        ("KubeSpawner", key, value, f"singleuser.profileList[{i}].kubespawner_override.{key}")
        for i, profile in enumerate(profiles)
        for key, value in profile.get("kubespawner_override", {}).items()
    ]
    assert items, "no kubespawner_override to check"
    assert pinned_check(items) == []
    assert sum(1 for p in profiles if p.get("default")) == 1


def test_the_trait_check_names_the_path_and_the_nearest_trait() -> None:
    problems = pinned_check(
        [
            ("KubeSpawner", "mem_limt", "2G", "singleuser.profileList[1].x"),
            ("KubeSpawner", "start_timeout", "soon", "hub.config.KubeSpawner.start_timeout"),
            ("KubeSpwner", "cmd", [], "hub.config.KubeSpwner.cmd"),
            ("KubeSpawner", "mem_limit", "2G", "singleuser.profileList[0].ok"),
        ]
    )
    assert problems[0] == (
        "singleuser.profileList[1].x: KubeSpawner has no configurable trait 'mem_limt'"
        " (nearest trait: mem_limit)"
    )
    assert problems[1].startswith("hub.config.KubeSpawner.start_timeout: ")
    assert problems[2].startswith("hub.config.KubeSpwner.cmd: no class 'KubeSpwner'")
    assert len(problems) == 3  # the valid trait passed


def test_singleuser_cmd_is_the_user_server_command_in_the_image() -> None:
    """``standalone_proxy_command()`` here, with this environment's install prefix mapped to
    the image's (the container test compares it inside the image itself)."""
    from consortium_lab.apps.hub import standalone_proxy_command
    from consortium_lab.apps.voila import notebooks_dir

    here = standalone_proxy_command()
    image = [
        arg.replace(str(notebooks_dir()), f"{IMAGE_SITE}/consortium_lab/notebooks").replace(
            str(Path(sys.executable).parent), f"{IMAGE_PREFIX}/bin"
        )
        for arg in here
    ]
    assert load("values.yaml")["singleuser"]["cmd"] == image


class _Group:
    def __init__(self, name: str) -> None:
        self.name = name


def test_jupyterlab_is_offered_to_the_trusted_group_only() -> None:
    from traitlets.config import Config

    values = load("values.yaml")
    c = Config()
    # What the chart's jupyterhub_config.py does with singleuser.profileList.
    c.KubeSpawner.profile_list = values["singleuser"]["profileList"]
    exec(values["hub"]["extraConfig"]["consortium-profiles"], {"c": c})

    def slugs(*groups: str) -> list[str]:
        spawner = types.SimpleNamespace(
            user=types.SimpleNamespace(groups=[_Group(g) for g in groups])
        )
        return [p["slug"] for p in c.KubeSpawner.profile_list(spawner)]

    assert slugs() == ["chat"]
    assert slugs("chat-users") == ["chat"]
    assert slugs("chat-users", "trusted") == ["chat", "lab"]


def keys_of(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield f"{path}.{key}".lstrip(".")
            yield from keys_of(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from keys_of(inner, f"{path}[{i}]")


def test_user_servers_purge_past_the_retention_at_start() -> None:
    values = load("values.yaml")["singleuser"]
    days = values["extraEnv"]["CONSORTIUM_LAB_RETENTION_DAYS"]
    from consortium_lab.sinks.runlog import parse_days

    assert parse_days(days) == 90
    # The chat server's own process purges (at start and every 6 hours; tests/test_retention.py
    # runs it): no second purge from a lifecycle hook.
    command = values["cmd"]
    assert command[command.index("-m") + 1] == "consortium_lab.apps.voila_server"
    assert "lifecycleHooks" not in values


def test_values_set_no_secret() -> None:
    secret_keys = {"client_secret", "api_token", "apiToken", "cookieSecret", "secretToken"}
    found = [p for p in keys_of(load("values.yaml")) if p.rsplit(".", 1)[-1] in secret_keys]
    assert found == []


# -- manifests ------------------------------------------------------------------------------


def workloads() -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d
        for name in MANIFESTS
        for d in docs(name)
        if d["kind"] in ("Deployment", "StatefulSet")
    }


def of_kind(kind: str) -> Iterator[dict[str, Any]]:
    for name in MANIFESTS:
        yield from (d for d in docs(name) if d["kind"] == kind)


def container(name: str) -> dict[str, Any]:
    spec = workloads()[name]["spec"]["template"]["spec"]
    (only,) = spec["containers"]
    return only


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_manifest_parses_with_its_kind_and_name() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for n in MANIFESTS for d in docs(n)}
    assert kinds == {
        ("ConfigMap", "consortium-gateway"),
        ("Deployment", "consortium-gateway"),
        ("Service", "consortium-gateway"),
        ("NetworkPolicy", "consortium-gateway"),
        ("StatefulSet", "consortium-redis"),
        ("Service", "consortium-redis"),
        ("NetworkPolicy", "consortium-redis"),
        ("Deployment", "consortium-analytics"),
        ("Service", "consortium-analytics"),
        ("NetworkPolicy", "consortium-analytics"),
    }
    assert not list(of_kind("Secret")), "secrets are referenced, never written in a manifest"


def test_selectors_match_labels_and_services_reach_a_named_port() -> None:
    for workload in workloads().values():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert matches(workload["spec"]["selector"]["matchLabels"], labels)
    for service in of_kind("Service"):
        targets = [
            w
            for w in workloads().values()
            if matches(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(targets) == 1, service["metadata"]["name"]
        (only,) = targets[0]["spec"]["template"]["spec"]["containers"]
        names = {p["name"]: p["containerPort"] for p in only["ports"]}
        for port in service["spec"]["ports"]:
            assert names[port["targetPort"]] == port["port"]
    for policy in of_kind("NetworkPolicy"):
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert any(
            matches(selector, w["spec"]["template"]["metadata"]["labels"])
            for w in workloads().values()
        )


def test_the_gateway_port_is_the_one_the_values_use() -> None:
    values = load("values.yaml")
    (service,) = [s for s in of_kind("Service") if s["metadata"]["name"] == "consortium-gateway"]
    port = service["spec"]["ports"][0]["port"]
    assert (
        values["hub"]["services"]["consortium-gateway"]["url"]
        == f"http://consortium-gateway:{port}"
    )
    (rule,) = values["singleuser"]["networkPolicy"]["egress"]
    assert rule["ports"] == [{"port": port, "protocol": "TCP"}]
    gateway_labels = workloads()["consortium-gateway"]["spec"]["template"]["metadata"]["labels"]
    assert matches(rule["to"][0]["podSelector"]["matchLabels"], gateway_labels)
    assert values["singleuser"]["networkPolicy"]["egressAllowRules"]["privateIPs"] is False
    config = next(of_kind("ConfigMap"))["data"]["gateway_config.py"]
    assert f"c.ServiceSettings.port = {port}" in config
    # The hub's NetworkPolicy admits only pods with this label; the gateway calls the hub API.
    assert gateway_labels["hub.jupyter.org/network-access-hub"] == "true"


def test_network_policies_admit_only_who_needs_in() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind("NetworkPolicy")}
    (redis_rule,) = policies["consortium-redis"]["ingress"]
    assert redis_rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "consortium-gateway"}}}
    ]
    assert redis_rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
    (gateway_rule,) = policies["consortium-gateway"]["ingress"]
    sources = [
        (s.get("namespaceSelector", {}).get("matchLabels"), s["podSelector"]["matchLabels"])
        for s in gateway_rule["from"]
    ]
    assert sources == [
        (None, {"app": "jupyterhub", "component": "proxy"}),
        (None, {"app": "jupyterhub", "component": "singleuser-server"}),
        (None, {"app.kubernetes.io/name": "consortium-analytics"}),
        ({"kubernetes.io/metadata.name": "monitoring"}, {"app.kubernetes.io/name": "prometheus"}),
    ]
    # The analytics pages: the proxy only (it routes them after the hub's login).
    (analytics_rule,) = policies["consortium-analytics"]["ingress"]
    assert analytics_rule["from"] == [
        {"podSelector": {"matchLabels": {"app": "jupyterhub", "component": "proxy"}}}
    ]
    assert analytics_rule["ports"] == [{"port": 8760, "protocol": "TCP"}]


def test_images_probes_resources_and_security_context() -> None:
    gateway, redis = container("consortium-gateway"), container("consortium-redis")
    assert gateway["image"].endswith("/consortium-lab/gateway:0.1.0")
    assert redis["image"].startswith("docker.io/library/redis:7")
    assert workloads()["consortium-gateway"]["spec"]["replicas"] == 2
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert gateway["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    # Liveness must not follow /health (503 while Redis is down): that would restart replicas
    # that resume by themselves.
    assert "httpGet" not in gateway["livenessProbe"]
    assert redis["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    analytics = container("consortium-analytics")
    assert analytics["image"].endswith("/consortium-lab/singleuser:0.1.0")
    for name, one in (
        ("consortium-gateway", gateway),
        ("consortium-redis", redis),
        ("consortium-analytics", analytics),
    ):
        pod = workloads()[name]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        assert one["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert set(one["resources"]["limits"]) == {"cpu", "memory"}
        assert set(one["resources"]["requests"]) == {"cpu", "memory"}
    assert (
        workloads()["consortium-gateway"]["spec"]["template"]["spec"]["securityContext"][
            "runAsUser"
        ]
        == 1000
    )


def secret_refs(c: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in c["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_secrets_come_by_reference_only() -> None:
    gateway, redis = container("consortium-gateway"), container("consortium-redis")
    assert secret_refs(gateway) == {
        "JUPYTERHUB_API_TOKEN": ("hub", "hub.services.consortium-gateway.apiToken"),
        "CONSORTIUM_REDIS_PASSWORD": ("consortium-redis", "password"),
        "CONSORTIUM_GATEWAY_ADMIN_TOKENS": ("consortium-gateway", "admin-tokens"),
        "CONSORTIUM_GATEWAY_METRICS_TOKENS": ("consortium-gateway", "metrics-tokens"),
        "CONSORTIUM_LAB_USER_HASH_SECRET": ("consortium-gateway", "user-hash-secret"),
        "CONSORTIUM_ANALYTICS_GATEWAY_TOKEN": ("consortium-gateway", "analytics-token"),
    }
    analytics = container("consortium-analytics")
    assert secret_refs(analytics) == {
        "JUPYTERHUB_API_TOKEN": ("hub", "hub.services.consortium-analytics.apiToken"),
        "CONSORTIUM_ANALYTICS_GATEWAY_TOKEN": ("consortium-gateway", "analytics-token"),
        "CONSORTIUM_LAB_USER_HASH_SECRET": ("consortium-gateway", "user-hash-secret"),
    }
    assert secret_refs(redis) == {
        "REDIS_PASSWORD": ("consortium-redis", "password"),
        "REDISCLI_AUTH": ("consortium-redis", "password"),
    }
    for one in (gateway, redis, analytics):
        literal = [e["name"] for e in one["env"] if "value" in e]
        # Whole words: JUPYTERHUB_OAUTH_CALLBACK_URL is a URL, not an AUTH secret.
        assert not [n for n in literal if set(n.upper().split("_")) & set(SECRET_WORDS)]
    volumes = workloads()["consortium-gateway"]["spec"]["template"]["spec"]["volumes"]
    keys = next(v for v in volumes if v["name"] == "llm")["secret"]
    assert keys["secretName"] == "consortium-provider-keys"
    assert keys["items"] == [{"key": "keys.json", "path": "keys.json"}]
    llm_path = next(e["value"] for e in gateway["env"] if e["name"] == "LLM_USER_PATH")
    mounts = {m["name"]: m for m in gateway["volumeMounts"]}
    assert mounts["llm"]["mountPath"] == llm_path and mounts["llm"]["readOnly"] is True


def test_the_gateway_config_reads_the_redis_password_from_its_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("traitlets")
    from consortium_lab.service.settings import ServiceSettings

    config = tmp_path / "gateway_config.py"
    config.write_text(next(of_kind("ConfigMap"))["data"]["gateway_config.py"])
    monkeypatch.delenv("CONSORTIUM_REDIS_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="CONSORTIUM_REDIS_PASSWORD is not set"):
        ServiceSettings.load(config)
    monkeypatch.setenv("CONSORTIUM_REDIS_PASSWORD", "p@ss/word")
    settings = ServiceSettings.load(config)
    assert settings.redis == "redis://:p%40ss%2Fword@consortium-redis:6379/0"
    assert (settings.host, settings.port, settings.auth) == ("0.0.0.0", 8750, "hub")
    assert settings.admin_tokens == []
    monkeypatch.setenv("CONSORTIUM_ANALYTICS_GATEWAY_TOKEN", "analytics-admin")
    assert ServiceSettings.load(config).admin_tokens == ["analytics-admin"]


def test_the_analytics_pod_is_the_hub_service_the_values_register() -> None:
    """Its environment is what the hub gives an OAuth service on one machine
    (``analytics_env()``), its port the values' URL, its gateway the gateway's Service."""
    from consortium_lab.apps.analytics import analytics_env, read_settings

    values = load("values.yaml")["hub"]
    analytics = container("consortium-analytics")
    env = {e["name"]: e.get("value") for e in analytics["env"]}
    expected = analytics_env({}, hub_api_url="http://hub:8081/hub/api", api_token="from-secret")
    assert {k: v for k, v in env.items() if k.startswith("JUPYTERHUB_")} == {
        **expected,
        "JUPYTERHUB_API_TOKEN": None,  # from the hub Secret
    }
    (service,) = [s for s in of_kind("Service") if s["metadata"]["name"] == "consortium-analytics"]
    port = service["spec"]["ports"][0]["port"]
    assert (
        values["services"]["consortium-analytics"]["url"] == f"http://consortium-analytics:{port}"
    )
    assert values["services"]["consortium-analytics"]["oauth_no_confirm"] is True
    assert analytics["command"][:3] == ["python", "-m", "consortium_lab.apps.analytics"]
    assert analytics["command"][3:] == [str(port), "0.0.0.0"]
    secrets = {k: "s3cret" for k, v in env.items() if v is None}
    settings = read_settings({**{k: v for k, v in env.items() if v is not None}, **secrets})
    assert settings.gateway == values["services"]["consortium-gateway"]["url"]
    assert settings.hash_switch is True


KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_-]{16,}|[0-9a-f]{32,}|BEGIN [A-Z ]*PRIVATE KEY")


def test_manifests_hold_no_key_like_string() -> None:
    for name in ("values.yaml", *MANIFESTS):
        assert KEY_LIKE.findall((K8S / name).read_text()) == [], name
    assert KEY_LIKE.findall("token: " + "ab12" * 16)  # the pattern does match a hex token
    json.dumps(load("values.yaml"))  # plain data only: no YAML tags the chart cannot take
