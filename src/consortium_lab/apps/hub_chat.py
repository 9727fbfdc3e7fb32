"""The chat in a hub: every model call goes through the gateway service, with the user's token.

When ``CONSORTIUM_LAB_GATEWAY_URL`` is set (the hub sets it for every user server),
:func:`consortium_lab.apps.voila.chat_widget` builds the chat here:

- :func:`~consortium_lab.apps.connect.connect` registers the gateway's models (as ``gw-<id>``)
  with the user's token, ``CONSORTIUM_LAB_GATEWAY_TOKEN`` else ``JUPYTERHUB_API_TOKEN`` (the
  server's token, which holds the gateway's scope);
- the chat offers **only** those models (a local demo model or a key-less plugin model would
  bypass the gateway's quotas) and runs them with ``Gateway(remote=True)``: the service already
  applies the cache, retries and quotas;
- a line above it shows who is signed in, a sign-out link and the quota left, read from the
  gateway's ``GET /v1/me`` after each run;
- "Delete my data" (:mod:`consortium_lab.widget.mydata`) also asks the gateway to delete what it
  keeps of the user (``DELETE /v1/me/data``, confirmed with the user name ``GET /v1/me`` gives).

No token, a gateway that cannot be reached or one that refuses the token: the page says which,
with the URL, and shows no chat (never a silent fall back to the demo models).
"""

from __future__ import annotations

import html
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from consortium_lab.apps.connect import GATEWAY_TOKEN_ENV, GATEWAY_URL_ENV
from consortium_lab.widget.chat import ChatWidget

__all__ = [
    "GatewayChatWidget",
    "delete_gateway_data",
    "gateway_url",
    "hub_chat",
    "quota_text",
    "start_config",
]

PREFIX = "gw-"
# Quota fields in the order and words the page uses.
_WINDOWS = {
    "requests_per_day": "requests today",
    "requests_per_minute": "requests this minute",
    "tokens_per_day": "tokens today",
    "tokens_per_minute": "tokens this minute",
}


def gateway_url() -> str | None:
    """The gateway the chat must use (``$CONSORTIUM_LAB_GATEWAY_URL``), ``None`` outside a hub."""
    return os.environ.get(GATEWAY_URL_ENV) or None


class GatewayChatWidget(ChatWidget):
    """The chat offering only the models of ``offered`` (the gateway's, as registered), whose
    "Delete my data" reaches the gateway at ``url`` with ``token``."""

    def __init__(
        self, *args: Any, offered: Sequence[str], url: str, token: str, **kwargs: Any
    ) -> None:
        self._offered = tuple(offered)
        self._url = url
        self._token = token
        super().__init__(*args, **kwargs)

    def delete_remote_data(self) -> str:
        """Delete what the gateway keeps of this user (:func:`delete_gateway_data`)."""
        return delete_gateway_data(self._url, self._token)

    def refresh_models(self) -> None:
        """Re-read the models ``llm`` can use here, keeping the gateway's only."""
        super().refresh_models()
        self.models = [m for m in self.models if m["id"] in self._offered]


def quota_text(me: dict[str, Any]) -> str:
    """The quota left in words, e.g. "3 of 5 requests today left (resets 00:00 UTC)"."""
    parts = []
    for field, words in _WINDOWS.items():
        window = (me.get("usage") or {}).get(field) or {}
        if window.get("limit") is None:
            continue
        resets = str(window.get("resets_at", ""))[11:16]
        parts.append(
            f"{window['remaining']} of {window['limit']} {words} left"
            + (f" (resets {resets} UTC)" if resets else "")
        )
    return "; ".join(parts) if parts else "no limit"


def _get(url: str, path: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url.rstrip("/") + path, headers={"Authorization": f"Bearer {token}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        data = json.loads(response.read().decode("utf-8"))
    return data if isinstance(data, dict) else {}


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read().decode("utf-8"))
        return str(body["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return f"HTTP {exc.code} {exc.reason}"


def delete_gateway_data(url: str, token: str) -> str:
    """``DELETE /v1/me/data`` at the gateway ``url`` as the user of ``token`` (confirmed with
    the user name ``GET /v1/me`` returns); what it did, in words. Raises ``RuntimeError`` naming
    the gateway and its reason when it refuses or cannot be reached."""
    try:
        user = str(_get(url, "/v1/me", token).get("user") or "")
        request = urllib.request.Request(
            url.rstrip("/") + "/v1/me/data",
            method="DELETE",
            data=json.dumps({"confirm": user}).encode("utf-8"),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            done = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"the gateway at {url} refused: {_error_text(exc)}") from exc
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"the gateway at {url} could not be reached: {exc}") from exc
    cached = int((done.get("deleted") or {}).get("cache_entries") or 0)
    records = int((done.get("pseudonymised") or {}).get("usage_records") or 0)
    return (
        f"The gateway deleted {cached} cached answer{'s' * (cached != 1)} and no longer "
        f"names you in {records} usage record{'s' * (records != 1)}."
    )


def start_config(url: str, token: str, ids: Sequence[str]) -> Any:
    """The consortium the chat starts with: the gateway's defaults (``GET
    /v1/consortium/defaults``) when this user may use them all, else the offline demo
    consortium when offered, else the first three models with the first as arbiter."""
    from consortium_lab.config.consortium import ConsortiumConfig
    from consortium_lab.widget.settings import DEMO_ARBITER, DEMO_MEMBERS

    try:
        defaults = _get(url, "/v1/consortium/defaults", token)
    except (OSError, ValueError):
        defaults = {}
    members = [PREFIX + m for m in defaults.get("members") or []]
    arbiter = PREFIX + str(defaults.get("arbiter") or "")
    if not (members and set(members) | {arbiter} <= set(ids)):
        members, arbiter = [PREFIX + m for m in DEMO_MEMBERS], PREFIX + DEMO_ARBITER
    if not set(members) | {arbiter} <= set(ids):
        members, arbiter = list(ids[:3]), ids[0]
    return ConsortiumConfig(models=dict.fromkeys(members, 1), arbiter=arbiter)


def _banner(user: str, quota: str) -> str:
    logout = (os.environ.get("JUPYTERHUB_BASE_URL") or "/").rstrip("/") + "/hub/logout"
    return (
        "<div class='cl-hub-bar' style='display:flex;gap:1rem;align-items:baseline'>"
        f"<span>Signed in as <b class='cl-hub-user'>{html.escape(user)}</b></span>"
        f"<span class='cl-hub-quota'>Quota left: {html.escape(quota)}</span>"
        f"<a class='cl-hub-logout' href='{html.escape(logout)}'>Sign out</a></div>"
    )


def _refusal(message: str) -> Any:
    import ipywidgets as widgets

    return widgets.HTML(
        "<div class='cl-hub-error' role='alert'><b>The chat cannot start.</b> "
        f"{html.escape(message)}</div>"
    )


def hub_chat(**kwargs: Any) -> Any:
    """The chat through the gateway at ``$CONSORTIUM_LAB_GATEWAY_URL`` with its banner (an
    ipywidgets ``VBox``), or a plain explanation of why it cannot start."""
    import ipywidgets as widgets

    from consortium_lab.apps.connect import GatewayConnectError, connect
    from consortium_lab.gateway.core import Gateway

    url = gateway_url()
    assert url is not None, f"hub_chat() needs ${GATEWAY_URL_ENV}"
    token = os.environ.get(GATEWAY_TOKEN_ENV) or os.environ.get("JUPYTERHUB_API_TOKEN")
    if not token:
        return _refusal(
            f"No token for the gateway at {url}: neither {GATEWAY_TOKEN_ENV} nor "
            "JUPYTERHUB_API_TOKEN is set."
        )
    try:
        ids = connect(url, token, prefix=PREFIX)
    except GatewayConnectError as exc:
        text = str(exc).rstrip(".")
        return _refusal(f"{text[:1].upper()}{text[1:]}.")
    if not ids:
        return _refusal(f"The gateway at {url} offers you no model.")
    kwargs.pop("demo", None)
    kwargs.setdefault("config", start_config(url, token, ids))
    chat = GatewayChatWidget(
        offered=ids, url=url, token=token, gateway=Gateway(remote=True), **kwargs
    )
    user = os.environ.get("JUPYTERHUB_USER", "")
    banner = widgets.HTML()

    def refresh(_change: Any = None) -> None:
        try:
            me = _get(url, "/v1/me", token)
        except (OSError, ValueError) as exc:
            banner.value = _banner(user, f"unknown (the gateway did not answer: {exc})")
            return
        banner.value = _banner(str(me.get("user") or user), quota_text(me))

    refresh()
    chat.observe(refresh, names="turns")
    return widgets.VBox([banner, chat])
