"""The gateway as the hub's ``consortium-gateway`` service: user tokens checked against the
real hub with JupyterHub's HubAuth and the service's scope, through the hub's proxy too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consortium_lab.service.hub_auth import HubTokens

from .conftest import process_tree, server_pid
from .deployment import PREFIX, SERVICE, Deployment, start_deployment, stop_deployment

TTL = 2.0
SCOPE = f"access:services!service={SERVICE}"


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    running = start_deployment(tmp_path_factory.mktemp("hubgw"), cache_ttl=TTL)
    try:
        yield running
    finally:
        stop_deployment(running)
        print("\nhub log (tail):\n" + running.hub.log_tail(3000))
        print("\ngateway log (tail):\n" + running.hub.gateway.log.read_text()[-3000:])
    assert "Traceback" not in running.hub.gateway.log.read_text()


def new_token(dep: Deployment, **body: object) -> tuple[str, str]:
    """A fresh API token of alice's (``body``: e.g. its ``scopes``) and its id."""
    status, model = dep.hub_api("POST", "/users/alice/tokens", {"note": "test", **body})
    assert status == 201, (status, model)
    return model["token"], model["id"]


def test_a_user_token_with_the_scope_is_accepted_directly_and_through_the_proxy(dep: Deployment):
    status, listing = dep.gw("/v1/models", dep.alice_token)
    assert status == 200, listing
    ids = [m["id"] for m in listing["data"]]
    assert ids and all(i.startswith("demo-") for i in ids)
    # The hub's proxy forwards /services/consortium-gateway/... unstripped.
    through = dep.call("GET", dep.hub.url.rstrip("/") + PREFIX + "v1/models", dep.alice_token)
    assert through == (200, listing)


def test_forged_scopeless_and_service_tokens_are_refused(dep: Deployment):
    status, body = dep.gw("/v1/models", "forged-" + "0" * 32)
    assert status == 401 and body["error"]["code"] == "invalid_api_key", body
    status, body = dep.gw("/v1/models", None)
    assert status == 401 and body["error"]["code"] == "invalid_api_key", body
    # A real token of alice's, without the gateway's scope.
    narrow, _ = new_token(dep, scopes=["read:users:name!user=alice"])
    status, body = dep.gw("/v1/models", narrow)
    assert status == 403, body
    assert body["error"]["code"] == "scope_missing" and SCOPE in body["error"]["message"]
    # The gateway's own token is a service's, not a user's.
    status, body = dep.gw("/v1/models", dep.hub.gateway.token)
    assert status == 403, body
    assert body["error"]["code"] == "scope_missing" and "service" in body["error"]["message"]


def test_a_revoked_token_is_refused_once_the_cache_ttl_has_passed(dep: Deployment):
    token, token_id = new_token(dep)
    assert dep.gw("/v1/models", token)[0] == 200
    status, _ = dep.hub_api("DELETE", f"/users/alice/tokens/{token_id}")
    assert status == 204
    revoked = time.monotonic()

    async def asked_afresh() -> bool:
        fresh = HubTokens(dep.hub.api, service_name=SERVICE, cache_ttl=3600)
        try:
            return await fresh.authenticate(token) is None
        finally:
            await fresh.close()

    assert asyncio.run(asked_afresh())  # the hub itself refuses it at once
    time.sleep(max(0.0, revoked + TTL + 0.5 - time.monotonic()))
    status, body = dep.gw("/v1/models", token)
    assert status == 401 and body["error"]["code"] == "invalid_api_key", body


def test_the_cache_keeps_an_answer_for_its_ttl(dep: Deployment):
    token, token_id = new_token(dep)

    async def check() -> tuple[bool, bool, bool]:
        remembering = HubTokens(dep.hub.api, service_name=SERVICE, cache_ttl=3600)
        uncached = HubTokens(dep.hub.api, service_name=SERVICE, cache_ttl=0)
        try:
            before = await remembering.authenticate(token) is not None
            await uncached.authenticate(token)
            await asyncio.to_thread(dep.hub_api, "DELETE", f"/users/alice/tokens/{token_id}")
            kept = await remembering.authenticate(token) is not None
            asked_again = await uncached.authenticate(token) is None
            return before, kept, asked_again
        finally:
            await remembering.close()
            await uncached.close()

    assert asyncio.run(check()) == (True, True, True)


def test_alice_s_server_token_works_and_is_refused_after_her_server_stops(dep: Deployment):
    dep.start_server("alice")
    environ = Path(f"/proc/{server_pid(dep.hub, 'alice')}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    server_token = env["JUPYTERHUB_API_TOKEN"]
    status, body = dep.gw("/v1/models", server_token)
    assert status == 200, body
    # No process of the user's server holds the provider key, in its environment or arguments.
    for pid in process_tree(server_pid(dep.hub, "alice")):
        for name in ("environ", "cmdline"):
            assert (
                dep.hub.gateway.provider_key.encode()
                not in Path(f"/proc/{pid}/{name}").read_bytes()
            )
    dep.stop_server("alice")
    stopped = time.monotonic()
    time.sleep(max(0.0, stopped + TTL + 0.5 - time.monotonic()))
    status, body = dep.gw("/v1/models", server_token)
    assert status == 401, body
