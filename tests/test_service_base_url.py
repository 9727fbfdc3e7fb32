"""The gateway service under a URL prefix (``base_url``, a hub service's ``/services/<name>/``)
and its JupyterHub settings; the token check against a real hub is in tests/hub/.

The service runs in this process on aiohttp's own test server (a real socket on 127.0.0.1).
"""

from __future__ import annotations

from typing import Any

import pytest

from consortium_lab.apps.ports import free_port
from consortium_lab.service.app import GatewayService
from consortium_lab.service.settings import ServiceSettings, SettingsError

ADMIN = "tok-admin-0123456789abcdef"


async def _serve(settings: ServiceSettings) -> Any:
    from aiohttp.test_utils import TestClient, TestServer

    service = GatewayService(settings)
    client = TestClient(TestServer(service.app(), host="127.0.0.1"))
    await client.start_server()
    return service, client


@pytest.mark.parametrize("bad", ["services/gw/", "/services/gw", "/services//gw/", ""])
def test_a_base_url_without_its_slashes_is_a_settings_error(bad):
    with pytest.raises(SettingsError, match=r"^base_url: must start and end with '/'"):
        ServiceSettings.from_dict({"base_url": bad})


def test_base_url_and_service_name_default_to_jupyterhub_s_variables(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/services/consortium-gateway/")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "consortium-gateway")
    settings = ServiceSettings()
    assert settings.base_url == "/services/consortium-gateway/"
    assert settings.hub_service_name == "consortium-gateway"
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX")
    monkeypatch.delenv("JUPYTERHUB_SERVICE_NAME")
    settings = ServiceSettings()
    assert settings.base_url == "/"
    assert settings.hub_service_name is None


def test_auth_hub_without_a_service_name_names_the_setting(tmp_path, monkeypatch):
    pytest.importorskip("jupyterhub")
    monkeypatch.delenv("JUPYTERHUB_SERVICE_NAME", raising=False)
    settings = ServiceSettings.from_dict(
        {
            "auth": "hub",
            "hub_api_url": "http://127.0.0.1:1/hub/api",
            "ledger": str(tmp_path / "l.db"),
        }
    )
    with pytest.raises(ValueError, match=r"^hub_service_name: auth 'hub' needs"):
        GatewayService(settings)


async def test_every_route_is_served_under_base_url_and_a_down_hub_is_a_503(tmp_path):
    """Routes answer under the prefix only (errors outside it keep OpenAI's shape); a hub that
    cannot be reached gives 503 with a body saying so, never a 401."""
    pytest.importorskip("jupyterhub")
    settings = ServiceSettings.from_dict(
        {
            "base_url": "/services/consortium-gateway/",
            "auth": "hub",
            "hub_api_url": f"http://127.0.0.1:{free_port()}/hub/api",  # nothing listens
            "hub_service_name": "consortium-gateway",
            "admin_tokens": [ADMIN],
            "ledger": str(tmp_path / "ledger.db"),
            "cache": "none",
        }
    )
    service, client = await _serve(settings)
    try:
        health = await client.get("/services/consortium-gateway/health")
        assert health.status == 200, await health.text()
        assert (await health.json())["ledger"] == "ok"
        outside = await client.get("/health")
        assert outside.status == 404
        assert set((await outside.json())["error"]) == {"message", "type", "code", "param"}
        admin = await client.get(
            "/services/consortium-gateway/admin/quotas",
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert admin.status == 200, await admin.text()
        refused = await client.get(
            "/services/consortium-gateway/v1/models",
            headers={"Authorization": "Bearer some-user-token"},
        )
        assert refused.status == 503
        error = (await refused.json())["error"]
        assert error["code"] == "auth_unavailable"
        assert "JupyterHub" in error["message"] and "did not answer" in error["message"]
        missing = await client.get("/services/consortium-gateway/v1/models")
        assert missing.status == 401
        assert (await missing.json())["error"]["code"] == "invalid_api_key"
        metrics = await client.get(
            "/services/consortium-gateway/metrics",
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        # The metrics name routes without the prefix, as a service at / does.
        assert 'route="/v1/models"' in await metrics.text()
    finally:
        await client.close()
        await service.aclose()
