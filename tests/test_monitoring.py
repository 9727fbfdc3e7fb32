"""The monitoring files in ``hub/monitoring/``: ``promtool check config``, ``check rules`` and
``test rules`` (each alert fires on a synthetic bad series, stays quiet on a normal one; the
cases are in ``alerts_test.yml``), and every metric the dashboard and the alerts query is one a
real gateway exports after a scripted mix of calls (JupyterHub's own are checked against
``jupyterhub.metrics`` when JupyterHub is installed).

``promtool`` comes with Debian's ``prometheus`` package (``scripts/test`` installs it when it
runs as root); without it the promtool tests skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import test_service as svc

from fake_openai import Fault, ModelScript

MONITORING = Path(__file__).resolve().parent.parent / "hub" / "monitoring"
METRICS_TOKEN = "tok-prometheus-0123456789abcdef"
BUILTIN = {"up"}  # Prometheus' own
_NAME = re.compile(r"\b((?:consortium|jupyterhub)_[a-z_]+|up)\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (apt-get install -y prometheus)")
    return found


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def queried_metrics() -> set[str]:
    """Every metric name in the dashboard's and the alerts' expressions."""
    exprs = [
        target["expr"]
        for panel in json.loads((MONITORING / "grafana-dashboard.json").read_text())["panels"]
        for target in panel["targets"]
    ]
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return {name for expr in exprs for name in _NAME.findall(expr)}


def test_prometheus_config_passes_promtool(tmp_path):
    tool = promtool()
    copy = tmp_path / "monitoring"
    shutil.copytree(MONITORING, copy)
    (copy / "secrets").mkdir()
    for name in ("hub-prometheus-token", "gateway-metrics-token"):
        (copy / "secrets" / name).write_text("a-token\n")
    checked = run(tool, "check", "config", "prometheus.yml", cwd=copy)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout + checked.stderr
    config = yaml.safe_load((copy / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["jupyterhub"]["metrics_path"] == "/hub/metrics"
    assert jobs["consortium-gateway"]["metrics_path"] == "/metrics"
    assert all("credentials_file" in job["authorization"] for job in jobs.values())


def test_alert_rules_pass_promtool_and_each_fires_only_on_a_bad_series():
    tool = promtool()
    checked = run(tool, "check", "rules", "alerts.yml", cwd=MONITORING)
    assert checked.returncode == 0 and "5 rules found" in checked.stdout, checked.stdout
    tested = run(tool, "test", "rules", "alerts_test.yml", cwd=MONITORING)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
    firing: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for case in cases:
        for check in case["alert_rule_test"]:
            bucket = firing if check["exp_alerts"] else quiet
            bucket[check["alertname"]] = bucket.get(check["alertname"], 0) + 1
    names = {
        rule["alert"]
        for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert names == set(firing)
    # A quiet check, or (5xx, provider failures) a normal series beside the bad one in the same
    # case that must not be among the alerts expected: promtool fails on an unexpected alert.
    assert set(quiet) >= names - {"ProviderFailuresHigh"}


def test_a_broken_rule_file_fails_promtool(tmp_path):
    tool = promtool()
    bad = tmp_path / "alerts.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: sum(\n")
    assert run(tool, "check", "rules", str(bad), cwd=tmp_path).returncode != 0


def test_every_queried_metric_is_exported_by_a_real_gateway(gateways, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps(
            {
                "currency": "USD",
                "models": {"m": {"input_per_million": 1.0, "output_per_million": 2.0}},
            }
        )
    )
    gateways.provider("m", ModelScript(reply="Fine.", token_delay=0.001))
    gateways.provider("flaky", ModelScript(reply="Second try.", faults=[Fault.status(500)]))
    gateways.provider("broken", ModelScript(faults=[Fault.status(500, forever=True)]))
    service = gateways.start(
        retries=1,
        fallbacks={"broken": ["m"]},
        prices=str(prices),
        metrics_tokens=[METRICS_TOKEN],
    )
    assert service.chat(svc.ALICE, "m", "Q").status == 200  # success
    assert service.chat(svc.ALICE, "m", "Q").json()["consortium"]["cached"] is True  # hit
    assert service.chat(svc.ALICE, "m", "S", stream=True).status == 200  # time to first token
    assert service.chat(svc.ALICE, "flaky", "Q").status == 200  # a retry
    assert service.chat(svc.ALICE, "broken", "Q").status == 200  # failure, then fallback
    quota = {"requests_per_day": 1}
    assert service.request("PUT", "/admin/quotas/users/bob", svc.ADMIN, quota).status == 200
    assert service.chat(svc.BOB, "m", "Q").status == 200
    assert service.chat(svc.BOB, "m", "Q2").status == 429  # quota refusal
    text = service.request("GET", "/metrics", METRICS_TOKEN).body.decode()

    from prometheus_client.parser import text_string_to_metric_families

    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    ours = {n for n in queried_metrics() if n.startswith("consortium_")}
    assert len(ours) >= 12
    assert ours <= exported, sorted(ours - exported)
    hub = {n for n in queried_metrics() if n.startswith("jupyterhub_")}
    assert hub == {"jupyterhub_active_users", "jupyterhub_server_spawn_duration_seconds_count"}
    assert queried_metrics() - ours - hub == BUILTIN


def test_hub_metrics_queried_are_jupyterhubs_own():
    metrics = pytest.importorskip("jupyterhub.metrics")
    from prometheus_client import Gauge, Histogram

    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, Histogram):
            names |= {value._name + s for s in ("_bucket", "_count", "_sum")}
        elif isinstance(value, Gauge):
            names.add(value._name)
    hub = {n for n in queried_metrics() if n.startswith("jupyterhub_")}
    assert hub <= names, sorted(hub - names)
