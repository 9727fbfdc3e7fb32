"""Settings admins change while the service runs, kept in the ledger (so on every replica):
the chat's default consortium and the price table.

Endpoints::

    GET  /admin/defaults          {"members": [...], "arbiter": "..."} ({} when not set)
    PUT  /admin/defaults          the same; each an offered model, else 400 naming
                                  ``members[i]`` or ``arbiter``
    GET  /v1/consortium/defaults  the same, for any user (the chat starts from it)
    GET  /admin/prices            the price table in force and where it comes from
    PUT  /admin/prices            a price table, validated as a prices file is (400 naming
                                  the bad entry); applies to the next call on every replica
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consortium_lab.gateway.pricing import PriceTable
from consortium_lab.service.errors import ApiError, validation_error
from consortium_lab.service.protocol import read_json

if TYPE_CHECKING:
    from aiohttp import web

    from consortium_lab.gateway.core import Gateway
    from consortium_lab.gateway.ledger import Ledger
    from consortium_lab.service.audit import AuditTrail
    from consortium_lab.service.auth import Gatekeeper
    from consortium_lab.service.discovery import ModelDirectory
    from consortium_lab.service.policies import RuleBook

__all__ = ["Defaults", "LiveSettings"]

logger = logging.getLogger(__name__)


class Defaults(BaseModel):
    """The consortium a chat starts with: gateway model ids."""

    model_config = ConfigDict(extra="forbid")

    members: list[str] = Field(min_length=1, description="The member models, in order.")
    arbiter: str = Field(description="The model that synthesizes.")


class LiveSettings:
    """The handlers of the defaults and prices endpoints; keeps the gateway's prices current."""

    def __init__(
        self,
        ledger: Ledger,
        rulebook: RuleBook,
        gatekeeper: Gatekeeper,
        directory: ModelDirectory,
        gateway: Gateway,
        audit: AuditTrail,
    ) -> None:
        self.ledger = ledger
        self.rulebook = rulebook
        self.gatekeeper = gatekeeper
        self.directory = directory
        self.gateway = gateway
        self.audit = audit
        self.file_prices = gateway.prices
        """The table of the settings (``prices``): in force when the ledger holds none."""
        rulebook.on_settings.append(self.apply)
        self.apply(rulebook.runtime)

    def apply(self, runtime: dict[str, Any]) -> None:
        """Put the ledger's price table (else the settings' one) in force."""
        stored = runtime.get("prices")
        if stored is None:
            self.gateway.prices = self.file_prices
            return
        try:
            table = PriceTable.model_validate(stored)
        except ValidationError as exc:  # written by an older release: keep serving
            logger.error("the ledger's price table is not valid, keeping the current: %s", exc)
            return
        table._source = "the ledger (PUT /admin/prices)"
        self.gateway.prices = table

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Route the endpoints of the module docstring."""
        router.add_get("/admin/defaults", self.get_defaults)
        router.add_put("/admin/defaults", self.put_defaults)
        router.add_get("/v1/consortium/defaults", self.user_defaults)
        router.add_get("/admin/prices", self.get_prices)
        router.add_put("/admin/prices", self.put_prices)

    async def _defaults(self) -> dict[str, Any]:
        await self.rulebook.refresh()
        return dict(self.rulebook.runtime.get("defaults") or {})

    async def get_defaults(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        return web.json_response(await self._defaults())

    async def user_defaults(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self.gatekeeper.identify(request)
        return web.json_response(await self._defaults())

    async def put_defaults(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        try:
            defaults = Defaults.model_validate(await read_json(request))
        except ValidationError as exc:
            raise validation_error(exc) from None
        offered = set((await self.directory.offered()).ids)
        named = [(f"members[{i}]", m) for i, m in enumerate(defaults.members)]
        for param, model in [*named, ("arbiter", defaults.arbiter)]:
            if model not in offered:
                raise ApiError(
                    400, f"{param}: {model!r} is not a model this gateway offers", param=param
                )
        value = defaults.model_dump()
        await asyncio.to_thread(self.ledger.set_setting, "defaults", value)
        await self.rulebook.refresh()
        await self.audit.record("admin", "defaults.set", None, value)
        return web.json_response(value)

    async def get_prices(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        await self.rulebook.refresh()
        table = self.gateway.prices
        return web.json_response(
            {"source": table.source, "table": table.model_dump(mode="json", exclude_none=True)}
        )

    async def put_prices(self, request: web.Request) -> web.Response:
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        body = await read_json(request)
        try:
            table = PriceTable.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from None
        value = table.model_dump(mode="json", exclude_none=True)
        await asyncio.to_thread(self.ledger.set_setting, "prices", value)
        await self.rulebook.refresh()
        await self.audit.record("admin", "prices.set", None, {"models": len(table.models)})
        return web.json_response({"source": self.gateway.prices.source, "table": value})
