"""The analytics service's own checks, without a hub: its settings refuse to start it with one
line naming the bad setting, and every answer it gives forbids framing. (Behind a real hub's
OAuth: ``tests/hub/test_hub_analytics.py``.)"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from consortium_lab.apps.analytics import analytics_env, read_settings

GOOD = {
    "CONSORTIUM_ANALYTICS_GATEWAY_URL": "http://127.0.0.1:9/",
    "CONSORTIUM_ANALYTICS_GATEWAY_TOKEN": "admin-token",
}


def test_the_hash_switch_without_its_secret_stops_the_service_with_one_line():
    env = {**os.environ, **GOOD, "CONSORTIUM_ANALYTICS_HASH_USERS": "1"}
    env.pop("CONSORTIUM_LAB_USER_HASH_SECRET", None)
    done = subprocess.run(
        [sys.executable, "-m", "consortium_lab.apps.analytics", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "consortium-analytics: CONSORTIUM_ANALYTICS_HASH_USERS=1 needs "
        "CONSORTIUM_LAB_USER_HASH_SECRET (the gateway's secret)"
    ]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"CONSORTIUM_ANALYTICS_GATEWAY_URL": ""}, "CONSORTIUM_ANALYTICS_GATEWAY_URL is not set"),
        ({"CONSORTIUM_ANALYTICS_GATEWAY_TOKEN": " "}, "CONSORTIUM_ANALYTICS_GATEWAY_TOKEN"),
        ({"CONSORTIUM_ANALYTICS_GATEWAY_URL": "gw:8000"}, "expected an http(s) URL"),
        ({"CONSORTIUM_ANALYTICS_HASH_USERS": "yes"}, "CONSORTIUM_ANALYTICS_HASH_USERS: expected"),
    ],
)
def test_bad_settings_are_named(change: dict[str, str], named: str):
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        read_settings({**GOOD, **change})


def test_settings_read():
    settings = read_settings(
        {**GOOD, "CONSORTIUM_ANALYTICS_HASH_USERS": "1", "CONSORTIUM_LAB_USER_HASH_SECRET": "s"}
    )
    assert (settings.gateway, settings.hash_switch, settings.secret) == (
        "http://127.0.0.1:9",
        True,
        "s",
    )
    assert read_settings(GOOD).hash_switch is False


async def test_every_answer_forbids_framing(monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("jupyterhub")
    from tornado.httpclient import AsyncHTTPClient

    from consortium_lab.apps.analytics import NO_FRAMING, make_app
    from consortium_lab.apps.ports import free_port

    # The hub is never reached: no page here gets past its login redirect.
    env = analytics_env({}, hub_api_url="http://127.0.0.1:9/hub/api", api_token="t")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    server = make_app(read_settings(GOOD)).listen(port, address="127.0.0.1")
    base = f"http://127.0.0.1:{port}/services/consortium-analytics/"
    client = AsyncHTTPClient()
    answers: dict[str, Any] = {}
    try:
        for method, path in (
            ("GET", ""),  # to the hub's login
            ("POST", "quota"),  # no XSRF token: 403
            ("GET", "oauth_callback"),  # no OAuth state: 400
            ("GET", "nowhere"),  # 404
        ):
            answers[path] = await client.fetch(
                base + path,
                method=method,
                body=b"" if method == "POST" else None,
                follow_redirects=False,
                raise_error=False,
            )
    finally:
        server.stop()
    codes = {path: answer.code for path, answer in answers.items()}
    assert codes == {"": 302, "quota": 403, "oauth_callback": 400, "nowhere": 404}
    for path, answer in answers.items():
        assert answer.headers.get("Content-Security-Policy") == NO_FRAMING, path
    assert b"<p class='cl-error'>404: Not Found</p>" in answers["nowhere"].body
    assert b"400: OAuth callback made without a token" in answers["oauth_callback"].body


def test_without_the_chart_bundle_the_service_does_not_start(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from consortium_lab.apps.analytics import serve

    monkeypatch.setattr("consortium_lab.widget.vega.STATIC", tmp_path)
    assert serve(0, GOOD) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"the chart bundle {tmp_path / 'chart.js'} is missing" in err[0]
