"""The admin API (``/admin/...``, admin tokens only): quota policies, access rules, usage.

Changes are stored in the ledger and apply to the next request on every replica; deleting an
override restores the settings' baseline.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from consortium_lab.gateway.ledger import Ledger, check_acl_subject, check_quota_subject
from consortium_lab.gateway.quotas import QuotaManager, QuotaPolicy
from consortium_lab.service.audit import AuditTrail
from consortium_lab.service.auth import Gatekeeper
from consortium_lab.service.errors import ApiError, validation_error
from consortium_lab.service.me import quota_windows
from consortium_lab.service.policies import RuleBook
from consortium_lab.service.protocol import read_json
from consortium_lab.service.settings import ServiceSettings

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["AdminApi", "parse_time"]

logger = logging.getLogger(__name__)


class AdminApi:
    """The admin API's handlers; :meth:`add_routes` puts them on an app."""

    def __init__(
        self,
        settings: ServiceSettings,
        ledger: Ledger,
        quotas: QuotaManager,
        gatekeeper: Gatekeeper,
        rulebook: RuleBook,
        audit: AuditTrail,
    ) -> None:
        self.settings = settings
        self.audit = audit
        self.ledger = ledger
        self.quotas = quotas
        self.gatekeeper = gatekeeper
        self.rulebook = rulebook

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Route every ``/admin/...`` endpoint to its handler."""
        r = router
        r.add_get("/admin/quotas", self.get_quotas)
        r.add_put("/admin/quotas/default", self.put_quota)
        r.add_put("/admin/quotas/{kind:users|groups}/{name}", self.put_quota)
        r.add_delete("/admin/quotas/default", self.delete_quota)
        r.add_delete("/admin/quotas/{kind:users|groups}/{name}", self.delete_quota)
        r.add_get("/admin/acl", self.get_acl)
        r.add_put("/admin/acl/everyone", self.put_acl)
        r.add_put("/admin/acl/{kind:users|groups}/{name}", self.put_acl)
        r.add_delete("/admin/acl/everyone", self.delete_acl)
        r.add_delete("/admin/acl/{kind:users|groups}/{name}", self.delete_acl)
        r.add_get("/admin/usage", self.usage)
        r.add_get("/admin/usage/records", self.records)
        r.add_get("/admin/users/{name}", self.user)
        r.add_delete("/admin/users/{name}/counters", self.reset_user)

    @staticmethod
    def _subject(request: web.Request, *, acl: bool) -> str:
        kind = request.match_info.get("kind")
        name = request.match_info.get("name")
        if kind is None:
            return "*" if acl else "default"
        subject = f"{'user' if kind == 'users' else 'group'}:{name}"
        try:
            return check_acl_subject(subject) if acl else check_quota_subject(subject)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="name") from None

    async def get_quotas(self, request: web.Request) -> web.Response:
        """GET /admin/quotas: baseline, overrides and effective policies."""
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        overrides = await asyncio.to_thread(self.ledger.quota_policies)
        rules = await self.rulebook.refresh()
        dump = lambda policies: {k: v.model_dump() for k, v in sorted(policies.items())}  # noqa: E731
        return web.json_response(
            {
                "baseline": dump(self.settings.baseline_quotas()),
                "overrides": dump(overrides),
                "effective": dump(rules.quotas),
            }
        )

    async def put_quota(self, request: web.Request) -> web.Response:
        """PUT /admin/quotas/{default|users/NAME|groups/NAME}: set a policy."""
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        subject = self._subject(request, acl=False)
        body = await read_json(request)
        try:
            policy = QuotaPolicy.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from None
        await asyncio.to_thread(self.ledger.set_quota, subject, policy)
        await self.rulebook.refresh()
        logger.info("admin: quota of %s set to %s", subject, policy.model_dump())
        await self.audit.record("admin", "quota.set", subject, policy.model_dump())
        return web.json_response({"subject": subject, "policy": policy.model_dump()})

    async def delete_quota(self, request: web.Request) -> web.Response:
        """DELETE /admin/quotas/...: back to the baseline."""
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        subject = self._subject(request, acl=False)
        await asyncio.to_thread(self.ledger.set_quota, subject, None)
        rules = await self.rulebook.refresh()
        effective = rules.quotas.get(subject)
        logger.info("admin: quota override of %s removed", subject)
        await self.audit.record("admin", "quota.delete", subject)
        return web.json_response(
            {"subject": subject, "policy": effective.model_dump() if effective else None}
        )

    async def get_acl(self, request: web.Request) -> web.Response:
        """GET /admin/acl: baseline, overrides and effective rules."""
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        overrides = await asyncio.to_thread(self.ledger.acl_rules)
        rules = await self.rulebook.refresh()
        return web.json_response(
            {
                "baseline": dict(sorted(self.settings.acl.items())),
                "overrides": dict(sorted(overrides.items())),
                "effective": {k: list(v) for k, v in sorted(rules.acl.items())},
            }
        )

    async def put_acl(self, request: web.Request) -> web.Response:
        """PUT /admin/acl/{everyone|users/NAME|groups/NAME}: set the allowed models."""
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        subject = self._subject(request, acl=True)
        body = await read_json(request)
        models = body.get("models")
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise ApiError(
                400,
                "models: expected a list of model ids or glob patterns ([] allows none)",
                param="models",
                code="missing_field" if models is None else "invalid_value",
            )
        try:
            await asyncio.to_thread(self.ledger.set_acl, subject, models)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="models", code="invalid_value") from None
        await self.rulebook.refresh()
        logger.info("admin: access of %s set to %s", subject, models)
        await self.audit.record("admin", "acl.set", subject, {"models": models})
        return web.json_response({"subject": subject, "models": models})

    async def delete_acl(self, request: web.Request) -> web.Response:
        """DELETE /admin/acl/...: back to the baseline."""
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        subject = self._subject(request, acl=True)
        await asyncio.to_thread(self.ledger.set_acl, subject, None)
        rules = await self.rulebook.refresh()
        effective = rules.acl.get(subject)
        logger.info("admin: access override of %s removed", subject)
        await self.audit.record("admin", "acl.delete", subject)
        return web.json_response(
            {"subject": subject, "models": list(effective) if effective is not None else None}
        )

    @staticmethod
    def _query_filters(request: web.Request) -> dict[str, Any]:
        query = request.query
        filters: dict[str, Any] = {}
        for name in ("since", "until"):
            if name in query:
                filters[name] = parse_time(query[name], name)
        for name in ("user", "model"):
            if query.get(name):
                filters[name] = query[name]
        return filters

    async def usage(self, request: web.Request) -> web.Response:
        """GET /admin/usage: aggregates, filtered and grouped by the query."""
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        filters = self._query_filters(request)
        group_by = [g for g in request.query.get("group_by", "user,model").split(",") if g]
        try:
            rows = await asyncio.to_thread(lambda: self.ledger.usage(group_by=group_by, **filters))
        except ValueError as exc:
            raise ApiError(400, str(exc), param="group_by", code="invalid_value") from None
        return web.json_response({"group_by": group_by, "filters": filters, "rows": rows})

    async def records(self, request: web.Request) -> web.Response:
        """GET /admin/usage/records: raw usage records, newest first."""
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        filters = self._query_filters(request)
        try:
            limit = int(request.query.get("limit", "100"))
            if not 1 <= limit <= 10_000:
                raise ValueError
        except ValueError:
            raise ApiError(
                400, "limit: expected an integer from 1 to 10000", param="limit"
            ) from None
        records = await asyncio.to_thread(lambda: self.ledger.records(limit=limit, **filters))
        return web.json_response({"records": [r.to_dict() for r in records]})

    async def user(self, request: web.Request) -> web.Response:
        """GET /admin/users/NAME: a user's policy, used quota windows and allowed models."""
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        user = request.match_info["name"]
        groups = (
            tuple(g for g in request.query["groups"].split(",") if g)
            if "groups" in request.query
            else self.gatekeeper.groups_of(user)
        )
        rules = await self.rulebook.refresh()
        windows = await asyncio.to_thread(self.quotas.usage, user)
        return web.json_response(
            {
                "user": user,
                "groups": list(groups),
                "policy": rules.quota_for(user, groups).model_dump(),
                "usage": quota_windows(windows),
                "models": list(rules.patterns_for(user, groups)),
            }
        )

    async def reset_user(self, request: web.Request) -> web.Response:
        """DELETE /admin/users/NAME/counters: forget the user's use of the current windows."""
        from aiohttp import web

        await self.gatekeeper.identify(request, admin=True)
        user = request.match_info["name"]
        await asyncio.to_thread(self.quotas.reset, user)
        logger.info("admin: quota counters of %s reset", user)
        await self.audit.record("admin", "counters.reset", f"user:{user}")
        return web.json_response({"user": user, "reset": True})


def parse_time(value: str, name: str) -> float:
    """Seconds since the epoch from ISO 8601 (UTC when no zone is given) or a number."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(
            400,
            f"{name}: expected ISO 8601 or seconds since the epoch (got {value!r})",
            param=name,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
