"""The gateway service's settings for running as a JupyterHub service: how tokens are checked,
where the hub's API is, the service's name there and the URL prefix it serves under.

A mixin of :class:`~consortium_lab.service.settings.ServiceSettings` (kept apart so that class
stays readable); every trait here is a ``ServiceSettings`` setting like the others.
"""

from __future__ import annotations

import os
from typing import Any

from traitlets import Bool, Enum, Float, TraitError, Unicode, default, validate
from traitlets.config import Configurable

__all__ = ["HubServiceSettings"]


class HubServiceSettings(Configurable):
    """Settings of the service's token check and its place behind JupyterHub's proxy."""

    base_url = Unicode(
        "/",
        help="URL prefix every route is served under, starting and ending with '/' (e.g. "
        "/services/consortium-gateway/: JupyterHub's proxy forwards /services/<name>/... "
        "unstripped). Default $JUPYTERHUB_SERVICE_PREFIX, else '/'.",
    ).tag(config=True)
    auth = Enum(
        ["static", "hub"],
        default_value=None,
        allow_none=True,
        help="How user tokens are checked: 'static' (tokens_file) or 'hub' (JupyterHub API). "
        "Default: hub when hub_api_url is set, else static.",
    ).tag(config=True)
    hub_api_url = Unicode(
        None,
        allow_none=True,
        help="JupyterHub's API URL (e.g. http://127.0.0.1:8081/hub/api); default "
        "$JUPYTERHUB_API_URL when auth is 'hub'.",
    ).tag(config=True)
    hub_api_token = Unicode(
        None,
        allow_none=True,
        help="This service's own JupyterHub API token, to read a user's groups when their token "
        "cannot; default $JUPYTERHUB_API_TOKEN.",
    ).tag(config=True, secret=True)
    hub_service_name = Unicode(
        None,
        allow_none=True,
        help="This service's name in JupyterHub: a user token is accepted only when it holds "
        "access:services!service=<name>. Default $JUPYTERHUB_SERVICE_NAME; required when auth "
        "is 'hub'.",
    ).tag(config=True)
    hub_cache_ttl = Float(
        60.0,
        min=0,
        help="Seconds a JupyterHub token check is remembered (0: ask the hub every time); a "
        "revoked token is refused at the latest this long after.",
    ).tag(config=True)
    hub_admins_are_admins = Bool(
        False, help="JupyterHub admins may use the /admin API with their own token."
    ).tag(config=True)

    @default("base_url")
    def _base_url_default(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"

    @default("hub_service_name")
    def _service_name_default(self) -> str | None:
        return os.environ.get("JUPYTERHUB_SERVICE_NAME") or None

    @validate("base_url")
    def _base_url_slashes(self, proposal: Any) -> str:
        value = str(proposal["value"])
        if not (value.startswith("/") and value.endswith("/")) or "//" in value:
            raise TraitError(
                f"base_url: must start and end with '/' (e.g. /services/consortium-gateway/; "
                f"got {value!r})"
            )
        return value
