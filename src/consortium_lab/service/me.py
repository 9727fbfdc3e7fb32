"""``GET /v1/me``: who the caller is to the gateway and what is left of their quota.

The chat page in a hub shows it (the signed-in user and their quota left); any user token may
read its own, and only its own.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from consortium_lab.service.auth import Gatekeeper
    from consortium_lab.service.policies import RuleBook, RuleQuotas

__all__ = ["Me", "quota_windows"]


def quota_windows(usage: dict[str, Any]) -> dict[str, Any]:
    """Quota windows as JSON: ``{field: {used, limit, remaining, resets_at}}``."""
    return {
        name: {**window, "resets_at": window["resets_at"].isoformat()}
        for name, window in usage.items()
    }


class Me:
    """The handler of ``GET /v1/me``."""

    def __init__(self, gatekeeper: Gatekeeper, rulebook: RuleBook, quotas: RuleQuotas) -> None:
        self.gatekeeper = gatekeeper
        self.rulebook = rulebook
        self.quotas = quotas

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Route ``GET /v1/me``."""
        router.add_get("/v1/me", self.get)

    async def get(self, request: web.Request) -> web.Response:
        """``{user, groups, policy, usage}`` of the token's own user."""
        from aiohttp import web

        identity = await self.gatekeeper.identify(request)
        rules = await self.rulebook.refresh()
        usage = await asyncio.to_thread(self.quotas.usage, identity.user)
        return web.json_response(
            {
                "user": identity.user,
                "groups": list(identity.groups),
                "policy": rules.quota_for(identity.user, identity.groups).model_dump(),
                "usage": quota_windows(usage),
            }
        )
