"""Logins in the gateway's audit log: the hub's post_auth_hook against a real gateway (no hub
running: the hook is called as JupyterHub calls it), and when the configuration installs it."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

import test_service as svc
from consortium_lab.gateway.ledger import SQLiteLedger, verify

from .conftest import HUB
from helpers import cli

sys.path.insert(0, str(HUB))
pytest.importorskip("tornado")
from consortium_hub.audit import LoginAudit


class GenericOAuthenticator:
    """Stands in for the authenticator object only by its class name (what the entry keeps)."""


async def test_a_login_is_appended_to_the_chain_and_a_non_admin_token_is_refused(gateways, caplog):
    service = gateways.start()
    assert service.request("PUT", "/admin/acl/users/bob", svc.ADMIN, {"models": []}).status == 200
    hook = LoginAudit(f"{service.url}/admin/audit", svc.ADMIN)
    auth = {"name": "carol", "admin": False, "auth_state": {"secret": "x"}}
    assert await hook(GenericOAuthenticator(), SimpleNamespace(), auth) is auth
    # A refused login (None) posts nothing.
    assert await hook(GenericOAuthenticator(), SimpleNamespace(), None) is None
    refused = LoginAudit(f"{service.url}/admin/audit", svc.ALICE)
    assert await refused(GenericOAuthenticator(), SimpleNamespace(), {"name": "mallory"}) == {
        "name": "mallory"
    }
    assert "the login of mallory is not in the audit log" in caplog.text
    assert "403" in caplog.text
    entries = service.request("GET", "/admin/audit", svc.ADMIN).json()["entries"]
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("admin", "acl.set"),
        ("carol", "login"),
    ]
    assert entries[1]["detail"] == {"authenticator": "GenericOAuthenticator", "admin": False}
    assert "secret" not in str(entries)
    service.stop()
    ledger = SQLiteLedger(gateways.root / "gw" / "ledger.db")
    try:
        assert verify(ledger.audit_entries()) == 2
    finally:
        ledger.close()


async def test_a_guest_login_is_logged_as_a_guest(gateways):
    """What ``GuestLoginHandler`` passes the hook (no authenticator of its own ran)."""
    service = gateways.start()
    hook = LoginAudit(f"{service.url}/admin/audit", svc.ADMIN)
    guest = {"name": "guest-0123456789ab", "admin": False, "guest": True}
    assert await hook(GenericOAuthenticator(), SimpleNamespace(), guest) is guest
    entries = service.request("GET", "/admin/audit", svc.ADMIN).json()["entries"]
    assert [(e["actor"], e["action"], e["detail"]) for e in entries] == [
        ("guest-0123456789ab", "login", {"authenticator": "guest", "admin": False})
    ]
    service.stop()


async def test_an_unreachable_gateway_does_not_stop_the_login(caplog):
    from consortium_lab.apps.ports import free_port

    hook = LoginAudit(f"http://127.0.0.1:{free_port()}/admin/audit", svc.ADMIN, timeout=30)
    assert await hook(GenericOAuthenticator(), SimpleNamespace(), {"name": "dave"}) == {
        "name": "dave"
    }
    assert "the login of dave is not in the audit log" in caplog.text


def test_the_hook_is_installed_with_a_gateway_admin_token_only(tmp_path):
    from consortium_hub.configure import configure
    from traitlets.config import Config

    from .conftest import GATEWAY_ADMIN, hub_env

    settings_mod = pytest.importorskip("consortium_hub.settings")
    unset = hub_env(tmp_path / "a", 8000, 8001)
    del unset["CONSORTIUM_HUB_GATEWAY_ADMIN_TOKEN"]
    without = Config()
    configure(without, settings_mod.read_settings(unset))
    assert "post_auth_hook" not in without.Authenticator
    env = hub_env(tmp_path / "b", 8000, 8001)
    assert env["CONSORTIUM_HUB_GATEWAY_ADMIN_TOKEN"] == GATEWAY_ADMIN
    c = Config()
    configure(c, settings_mod.read_settings(env))
    hook = c.Authenticator.post_auth_hook
    assert isinstance(hook, LoginAudit) and hook.token == GATEWAY_ADMIN
    gateway = env["CONSORTIUM_HUB_GATEWAY_URL"].rstrip("/")
    assert hook.audit_url == f"{gateway}/services/consortium-gateway/admin/audit"
    short = hub_env(tmp_path / "c", 8000, 8001, CONSORTIUM_HUB_GATEWAY_ADMIN_TOKEN="short")
    with pytest.raises(settings_mod.SettingsError, match="GATEWAY_ADMIN_TOKEN: too short"):
        settings_mod.read_settings(short)


def test_a_real_login_is_in_the_gateways_audit_log(hub, new_context):
    import time

    from .conftest import GATEWAY_ADMIN, submit_login

    page = new_context().new_page()
    submit_login(page, hub, "carol")
    deadline = time.monotonic() + 180
    logins: list[dict] = []
    while not logins:
        assert time.monotonic() < deadline, "no login entry:\n" + hub.log_tail(3000)
        time.sleep(0.5)
        status, body = svc_get(hub.gateway.url + "/admin/audit?action=login", GATEWAY_ADMIN)
        assert status == 200, (status, body)
        logins = [e for e in body["entries"] if e["actor"] == "carol"]
    [entry] = logins
    assert entry["detail"]["authenticator"] == "ConsortiumGenericOAuthenticator"
    assert entry["detail"]["admin"] is False
    ledger = hub.root / "gateway" / "ledger.db"
    verified = cli(None, "audit", "verify", "--ledger", str(ledger), check=False)
    assert verified.returncode == 0, verified.stderr


def svc_get(url: str, token: str) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    from .conftest import OPENER

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with OPENER.open(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read().decode(errors="replace")}
