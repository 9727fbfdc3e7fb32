"""JupyterHub API tokens, checked with JupyterHub's own :class:`~jupyterhub.services.auth.HubAuth`.

The gateway runs as a hub service named ``hub_service_name``. A token is accepted only when
``GET {hub_api_url}/user`` answers ``kind: user`` and its ``scopes`` grant
``access:services!service=<name>`` (HubAuth's scope check, which understands filters and bare
scopes). HubAuth keeps its own cache of the hub's answers for ``cache_max_age`` seconds (from
``hub_cache_ttl``), refusals included; its tornado ``HTTPError`` for a hub that fails or
cannot be reached becomes :class:`~.auth.AuthUnavailable` (a 503, never a 401).

Needs the ``hub`` extra (``jupyterhub``); imported only when ``auth`` is ``hub``.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from consortium_lab.service.auth import AuthUnavailable, Identity, ScopeMissing

if TYPE_CHECKING:
    from aiohttp import ClientSession

__all__ = ["HubTokens", "service_scope"]


def service_scope(service_name: str) -> str:
    """The scope a token needs to use the service ``service_name``."""
    return f"access:services!service={service_name}"


class HubTokens:
    """Resolves JupyterHub tokens to identities for the service ``service_name``.

    Args:
        hub_api_url: the hub's API, e.g. ``http://127.0.0.1:8081/hub/api``.
        service_name: this service's name in the hub (the scope a token must hold).
        api_token: the service's own hub token: reads a user's groups when the user's token
            may not (a server token holds no ``read:users:groups``).
        cache_ttl: seconds an answer of the hub is remembered (0: never).
        admins_are_admins: hub admins may use the /admin API.
    """

    def __init__(
        self,
        hub_api_url: str,
        *,
        service_name: str,
        api_token: str | None = None,
        cache_ttl: float = 60.0,
        admins_are_admins: bool = False,
        timeout: float = 10.0,
    ) -> None:
        if not hub_api_url.startswith(("http://", "https://")):
            raise ValueError(f"hub_api_url must be an http(s) URL (got {hub_api_url!r})")
        if not service_name:
            raise ValueError(
                "hub_service_name: auth 'hub' needs this service's name in JupyterHub "
                "(or $JUPYTERHUB_SERVICE_NAME)"
            )
        try:
            from jupyterhub.services.auth import HubAuth
        except ImportError as exc:
            raise ValueError(
                "auth 'hub' needs JupyterHub's client library: pip install 'consortium-lab[hub]'"
            ) from exc
        self.hub_api_url = hub_api_url.rstrip("/")
        self.service_name = service_name
        self.scope = service_scope(service_name)
        self.api_token = api_token
        self.cache_ttl = cache_ttl
        self.admins_are_admins = admins_are_admins
        self.timeout = timeout
        # cache_max_age is whole seconds, and 0 there means "for ever": 0 here skips the cache.
        self._hub_auth = HubAuth(
            api_url=self.hub_api_url,
            api_token=api_token or "",
            cache_max_age=max(1, math.ceil(cache_ttl)),
            access_scopes={self.scope},
        )
        self._groups: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._session: ClientSession | None = None

    async def authenticate(self, token: str) -> Identity | None:
        """The token's user, ``None`` for an unknown or revoked token.

        Raises:
            ScopeMissing: a service's token, or a user token without the service's scope.
            AuthUnavailable: the hub failed or could not be reached.
        """
        from tornado.web import HTTPError

        try:
            model = await self._hub_auth.user_for_token(
                token, use_cache=self.cache_ttl > 0, sync=False
            )
        except HTTPError as exc:
            raise AuthUnavailable(
                f"JupyterHub API at {self.hub_api_url} failed: {exc.log_message or exc}"
            ) from exc
        if not model:
            return None
        if model.get("kind", "user") != "user":
            raise ScopeMissing(self.scope, f"a {model.get('kind')}'s token, not a user's")
        if not self._hub_auth.check_scopes({self.scope}, {"scopes": model.get("scopes") or []}):
            raise ScopeMissing(self.scope)
        name = str(model["name"])
        groups = model.get("groups")
        return Identity(
            user=name,
            groups=tuple(str(g) for g in groups)
            if groups is not None
            else await self._groups_of(name),
            admin=self.admins_are_admins and bool(model.get("admin")),
            token_id=f"hub-{model['token_id']}" if model.get("token_id") else None,
        )

    async def _groups_of(self, name: str) -> tuple[str, ...]:
        """The user's groups read with the service's own token (remembered like a token)."""
        now = time.monotonic()
        cached = self._groups.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        if not self.api_token:
            return ()
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.get(
                f"{self.hub_api_url}/users/{name}",
                headers={"Authorization": f"token {self.api_token}"},
            ) as resp:
                if resp.status >= 500:
                    raise AuthUnavailable(
                        f"JupyterHub API answered {resp.status} for /users/{name}"
                    )
                full: Any = await resp.json(content_type=None) if resp.status < 400 else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise AuthUnavailable(f"JupyterHub API at {self.hub_api_url} failed: {exc}") from exc
        groups = tuple(str(g) for g in (full or {}).get("groups") or ())
        self._groups[name] = (now + self.cache_ttl, groups)
        return groups

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
