"""``DELETE /v1/me/data``: a user removes what the gateway keeps about them.

The caller's cached answers (their prompts and answers) are deleted, and their name in the
usage records is replaced by its pseudonym (:func:`~consortium_lab.gateway.userhash.user_hash`,
keyed by ``user_hash_secret``), so usage totals stay right while the records no longer say who.
The body must confirm: ``{"confirm": "<the caller's user name>"}``; without it, 400 and
nothing is deleted. The deletion itself is written to the audit log under the pseudonym.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from consortium_lab.gateway.core import Gateway
from consortium_lab.gateway.userhash import user_hash
from consortium_lab.service.audit import AuditTrail
from consortium_lab.service.auth import Gatekeeper
from consortium_lab.service.errors import ApiError
from consortium_lab.service.protocol import read_json
from consortium_lab.service.settings import ServiceSettings

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["MyData"]

logger = logging.getLogger(__name__)


class MyData:
    """The handler of ``DELETE /v1/me/data``."""

    def __init__(
        self,
        settings: ServiceSettings,
        gateway: Gateway,
        gatekeeper: Gatekeeper,
        audit: AuditTrail,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.gatekeeper = gatekeeper
        self.audit = audit

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Route ``DELETE /v1/me/data``."""
        router.add_delete("/v1/me/data", self.delete)

    async def delete(self, request: web.Request) -> web.Response:
        """Delete the caller's cache entries and pseudonymise their usage records."""
        from aiohttp import web

        identity = await self.gatekeeper.identify(request)
        body = await read_json(request) if request.can_read_body else {}
        confirm = body.get("confirm")
        if confirm is None:
            raise ApiError(
                400,
                "confirm: required, your user name, to confirm that all your data is deleted",
                param="confirm",
                code="missing_field",
            )
        if confirm != identity.user:
            raise ApiError(
                400,
                "confirm: must be your user name exactly; nothing was deleted",
                param="confirm",
                code="invalid_value",
            )
        secret = self.settings.user_hash_secret
        if not secret:
            raise ApiError(
                503,
                "Deleting data is not configured on this gateway (user_hash_secret is not set).",
                type="server_error",
                code="not_configured",
            )
        alias = user_hash(identity.user, secret)
        cache = self.gateway.cache
        removed = 0
        if cache is not None and not self.settings.shared_cache:
            removed = await asyncio.to_thread(cache.delete_user, identity.user)
        renamed = await asyncio.to_thread(self.audit.ledger.rename_user, identity.user, alias)
        await self.audit.record(
            alias,
            "user.data_deleted",
            alias,
            {"cache_entries": removed, "usage_records": renamed},
        )
        return web.json_response(
            {
                "deleted": {"cache_entries": removed},
                "pseudonymised": {"usage_records": renamed, "as": alias},
            }
        )
