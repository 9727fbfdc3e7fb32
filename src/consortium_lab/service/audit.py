"""The audit log's service side: what is written to it, and ``/admin/audit``.

Written here: every admin-API write (by :class:`~.admin.AdminApi`), the first use of each
token id (hub or static) by any replica, usage purges, a user's deletion of their data, and
what the hub posts (logins, from its ``post_auth_hook``). The entries live in the ledger,
append-only and hash-chained (:mod:`consortium_lab.gateway.ledger.audit`); no endpoint edits
or deletes one.

    POST /admin/audit   body: {"actor", "action", "target"?, "detail"?}  (admin token)
    GET  /admin/audit   query: after (sequence number), limit (default 100), action, actor
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from consortium_lab.gateway.ledger import AuditEntry, Ledger
from consortium_lab.service.auth import Gatekeeper, Identity
from consortium_lab.service.errors import ApiError
from consortium_lab.service.protocol import read_json

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["AuditTrail"]

logger = logging.getLogger(__name__)

_ACTION = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_MAX_DETAIL = 4096  # bytes of JSON a posted entry may carry


class AuditTrail:
    """Appends to the ledger's audit log (off the event loop) and serves ``/admin/audit``."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.gatekeeper: Gatekeeper | None = None

    async def record(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry; the stored entry."""
        entry = await asyncio.to_thread(self.ledger.audit, actor, action, target, detail)
        logger.info("audit %d: %s %s %s", entry.seq, actor, action, target or "")
        return entry

    async def token_first_use(self, identity: Identity) -> None:
        """The Gatekeeper's hook: one entry the first time any replica sees a token id."""
        assert identity.token_id is not None
        await asyncio.to_thread(
            self.ledger.audit_once,
            f"token:{identity.token_id}",
            identity.user,
            "token.first_use",
            identity.user,
            {"token_id": identity.token_id},
        )

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Route ``/admin/audit`` (no route edits or deletes an entry)."""
        router.add_post("/admin/audit", self.post)
        router.add_get("/admin/audit", self.get)

    def _gate(self) -> Gatekeeper:
        if self.gatekeeper is None:
            raise RuntimeError("AuditTrail.gatekeeper is not set")
        return self.gatekeeper

    async def post(self, request: web.Request) -> web.Response:
        """POST /admin/audit: append an entry the hub reports (a login, say)."""
        import json

        from aiohttp import web

        await self._gate().identify(request, admin=True)
        body = await read_json(request)
        for name in ("actor", "action"):
            if not isinstance(body.get(name), str) or not body[name].strip():
                raise ApiError(400, f"{name}: a non-empty string is required", param=name)
        if not _ACTION.match(body["action"]):
            raise ApiError(
                400,
                "action: lower-case letters, digits, '.', '_' or '-', starting with a letter",
                param="action",
                code="invalid_value",
            )
        target = body.get("target")
        if target is not None and not isinstance(target, str):
            raise ApiError(400, "target: a string or null", param="target", code="invalid_value")
        detail = body.get("detail") or {}
        if not isinstance(detail, dict) or len(json.dumps(detail)) > _MAX_DETAIL:
            raise ApiError(
                400,
                f"detail: an object of at most {_MAX_DETAIL} bytes of JSON",
                param="detail",
                code="invalid_value",
            )
        entry = await self.record(body["actor"].strip(), body["action"], target, detail)
        return web.json_response(entry.to_dict(), status=201)

    async def get(self, request: web.Request) -> web.Response:
        """GET /admin/audit: entries after a sequence number, oldest first."""
        from aiohttp import web

        await self._gate().identify(request, admin=True)
        query = request.query
        try:
            after = int(query.get("after", "0"))
            limit = int(query.get("limit", "100"))
            if after < 0 or not 1 <= limit <= 10_000:
                raise ValueError
        except ValueError:
            raise ApiError(
                400, "after: an integer >= 0; limit: an integer from 1 to 10000", param="limit"
            ) from None
        action, actor = query.get("action"), query.get("actor")
        entries = await asyncio.to_thread(self.ledger.audit_entries, after=after)
        chosen = [
            e
            for e in entries
            if (action is None or e.action == action) and (actor is None or e.actor == actor)
        ][:limit]
        return web.json_response({"entries": [e.to_dict() for e in chosen]})
