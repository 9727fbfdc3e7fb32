"""The gateway as an HTTP service speaking the OpenAI chat-completions protocol.

``consortium-lab gateway`` runs it. Kernels reach it with ``llm``'s own OpenAI-compatible model
support (see :func:`consortium_lab.apps.connect`), so a user's kernel holds no provider key: the
service holds them (its own ``llm`` key store and environment) and every call passes the
in-process :class:`~consortium_lab.gateway.core.Gateway` here, with its cache, retries, fallbacks,
quotas and metrics.

Endpoints::

    POST /v1/chat/completions   JSON, or SSE chunks ending with ``data: [DONE]`` (``stream``);
                                ``stream_options.include_usage`` adds a final usage chunk
    GET  /v1/models             the models the caller may use
    GET  /metrics               Prometheus text: the gateway's metrics and the service's own
    GET  /health                liveness and the ledger's state (no authentication)
    GET  /v1/me                 the caller's user, groups, quota policy and what is left of it
    DELETE /v1/me/data          the caller's cache entries deleted, usage pseudonymised
                                (body {"confirm": USER}; see :mod:`.mydata`)
    /admin/...                  quotas, access rules and usage (admin tokens; see below), and
                                the audit log (``/admin/audit``; see :mod:`.audit`)

Requests carry ``Authorization: Bearer <token>``. A token is resolved to an
:class:`~.auth.Identity` (user, groups) by an authenticator: :class:`~.auth.StaticTokens` (a
file of tokens, for a standalone service) or :class:`~.hub_auth.HubTokens` (JupyterHub API
tokens, with the service's scope). Every route is served under ``base_url`` (``/`` by
default; a hub service's ``/services/<name>/``).
Quotas and the response cache are kept per user (a cache shared across users is an explicit
setting). Usage, quota policies and
access rules live in the service's :mod:`~consortium_lab.gateway.ledger` and survive restarts.

Admin API (``Authorization: Bearer <admin token>``; bodies and answers are JSON)::

    GET    /admin/quotas                      baseline, overrides and effective policies
    PUT    /admin/quotas/default              body: a QuotaPolicy (fields below)
    PUT    /admin/quotas/users/{name}         body: a QuotaPolicy
    PUT    /admin/quotas/groups/{name}        body: a QuotaPolicy
    DELETE /admin/quotas/{default|users/{name}|groups/{name}}   back to the baseline
    GET    /admin/defaults, PUT /admin/defaults   the chat's default consortium
                                              (users read it at GET /v1/consortium/defaults)
    GET    /admin/prices, PUT /admin/prices       the price table in force (see
                                              :mod:`.live_settings`)
    GET    /admin/acl                         baseline, overrides and effective rules
    PUT    /admin/acl/everyone                body: {"models": ["pattern", ...]}
    PUT    /admin/acl/users/{name}            body: {"models": [...]}
    PUT    /admin/acl/groups/{name}           body: {"models": [...]}
    DELETE /admin/acl/{everyone|users/{name}|groups/{name}}     back to the baseline
    GET    /admin/usage                       aggregates; query: since, until (ISO 8601 or
                                              epoch seconds), user, model,
                                              group_by=user,model,served_by,outcome,day
    GET    /admin/usage/records               raw records, newest first; query: since, until,
                                              user, model, limit (default 100)
    GET    /admin/users/{name}                effective policy, quota windows used, allowed
                                              models (groups as last seen, or ?groups=a,b)
    DELETE /admin/users/{name}/counters       forget the user's use of the current windows

A QuotaPolicy is ``{"requests_per_minute", "requests_per_day", "tokens_per_minute",
"tokens_per_day", "max_output_tokens_per_call"}``, each a positive integer or null (no limit).
Changes apply to the next request, on every replica sharing the ledger.

Errors always have OpenAI's shape ``{"error": {"message", "type", "code", "param"}}`` and never
carry a stack trace: 400 (bad JSON or field, the field named in ``param``), 401 (no or bad
token), 403 (model or endpoint not allowed), 404 (unknown model ``model_not_found``, unknown
endpoint), 413 (body too large), 429 (quota, with ``Retry-After``), 502/503/504 (the provider
failed after retries: its own message, ``code`` the failure kind), 500 (a bug: a generic
message with a reference that is logged with the traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, cast

from consortium_lab.gateway.core import Gateway
from consortium_lab.gateway.ledger import Ledger
from consortium_lab.service.admin import AdminApi
from consortium_lab.service.audit import AuditTrail
from consortium_lab.service.auth import Authenticator, Gatekeeper, build_authenticator
from consortium_lab.service.chat import ChatCompletions
from consortium_lab.service.discovery import ModelDirectory, Offered
from consortium_lab.service.errors import (
    ApiError,
    backend_down,
    http_error,
    internal_error,
    ledger_unavailable,
)
from consortium_lab.service.live_settings import LiveSettings
from consortium_lab.service.me import Me
from consortium_lab.service.metrics import ServiceMetrics
from consortium_lab.service.mydata import MyData
from consortium_lab.service.policies import RuleBook, RuleQuotas
from consortium_lab.service.retention import RetentionPurger
from consortium_lab.service.settings import ServiceSettings
from consortium_lab.service.usage import UsageRecorder

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["GatewayService", "run"]

logger = logging.getLogger(__name__)

Transport = Literal["aiohttp", "httpx"]


class GatewayService:
    """The gateway HTTP service: build with settings, then :meth:`serve` (or :meth:`app`).

    Args:
        settings: the :class:`~consortium_lab.service.settings.ServiceSettings`.
        authenticator: overrides the one the settings describe.
        ledger: overrides the one the settings describe.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        authenticator: Authenticator | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        from consortium_lab.gateway.ledger import open_ledger
        from consortium_lab.gateway.metrics import Metrics
        from consortium_lab.gateway.pricing import PriceTable

        self.settings = settings
        self.ledger = ledger or open_ledger(settings.redis or settings.ledger_path())
        self.check_backends()  # before anything reads the ledger: one clear line, not a trace
        self.metrics = ServiceMetrics()
        self.audit = AuditTrail(self.ledger)
        self.gatekeeper = Gatekeeper(
            authenticator or build_authenticator(settings),
            settings.admin_tokens,
            self.metrics,
            metrics_tokens=settings.metrics_tokens,
            first_use=self.audit.token_first_use,
        )
        self.audit.gatekeeper = self.gatekeeper
        self.rulebook = RuleBook(self.ledger, settings)
        self.quotas = RuleQuotas(
            lambda: self.rulebook.rules, self.gatekeeper.groups_of, self.ledger.quota_storage
        )
        self.gateway = Gateway(
            cache=settings.cache_spec(),
            ttl=settings.cache_ttl,
            retries=settings.retries,
            backoff=settings.backoff,
            max_backoff=settings.max_backoff,
            fallbacks=settings.fallbacks,
            timeout=settings.timeout,
            cooldown=settings.cooldown,
            cooldown_after=settings.cooldown_after,
            groups=settings.groups,
            routing=settings.routing,
            model_settings=settings.model_settings,
            quotas=self.quotas,
            prices=PriceTable.load(settings.prices),
            metrics=Metrics(),
            user="anonymous",
            shared_cache=settings.shared_cache,
            log_to_llm=settings.log_to_llm,
            http_transport=cast(Transport, settings.provider_http),
            lean_streaming=settings.lean_streaming,
        )
        self.directory = ModelDirectory(settings)
        self.chat = ChatCompletions(
            settings,
            self.gateway,
            self.gatekeeper,
            self.directory,
            self.rulebook,
            UsageRecorder(self.ledger, self.metrics),
            self.metrics,
        )
        self.admin = AdminApi(
            settings, self.ledger, self.quotas, self.gatekeeper, self.rulebook, self.audit
        )
        self.mydata = MyData(settings, self.gateway, self.gatekeeper, self.audit)
        self.me = Me(self.gatekeeper, self.rulebook, self.quotas)
        self.live = LiveSettings(
            self.ledger, self.rulebook, self.gatekeeper, self.directory, self.gateway, self.audit
        )
        self.retention = RetentionPurger(self.audit, settings.usage_retention_days)
        self.url: str | None = None

    async def offered(self, *, refresh: bool = False) -> Offered:
        """The models offered now (re-read every ``models_refresh`` seconds or on demand)."""
        return await self.directory.offered(refresh=refresh)

    # -- the app ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        """The aiohttp application."""
        from aiohttp import web

        size = self.settings.max_request_bytes
        root = web.Application(middlewares=[self._middleware()], client_max_size=size)
        base = self.settings.base_url.rstrip("/")
        # Under a prefix (a hub service) the routes live in a sub-application; the root's
        # middleware still answers every error, outside the prefix too.
        app = web.Application(client_max_size=size) if base else root
        r = app.router
        r.add_post("/v1/chat/completions", self.chat.handle)
        r.add_get("/v1/models", self.list_models)
        r.add_get("/metrics", self.metrics_endpoint)
        r.add_get("/health", self.health)
        self.admin.add_routes(r)
        self.audit.add_routes(r)
        self.mydata.add_routes(r)
        self.me.add_routes(r)
        self.live.add_routes(r)
        if base:
            root.add_subapp(base, app)
        return root

    def _middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        """Answers every error in OpenAI's shape and counts every request."""
        from aiohttp import web

        base = self.settings.base_url.rstrip("/")

        @web.middleware
        async def middleware(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            start = time.monotonic()
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "other"
            # Metrics name a route the same way whatever the base_url.
            route = route.removeprefix(base) if base and route.startswith(base + "/") else route
            response: web.StreamResponse
            try:
                response = await handler(request)
            except ApiError as exc:
                response = exc.response()
            except web.HTTPException as exc:
                response = http_error(request, exc).response()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if backend_down(exc):
                    # Redis (or the SQLite file) is down: a 503 the client may retry, and one
                    # line in the log rather than a traceback per request.
                    logger.warning(
                        "ledger unreachable on %s %s: %s", request.method, request.path, exc
                    )
                    response = ledger_unavailable().response()
                else:
                    ref = uuid.uuid4().hex[:12]
                    logger.exception(
                        "internal error (ref %s) on %s %s", ref, request.method, request.path
                    )
                    response = internal_error(ref).response()
            self.metrics.http_requests.labels(
                route=route, method=request.method, status=str(response.status)
            ).inc()
            self.metrics.http_duration.labels(route=route).observe(time.monotonic() - start)
            return response

        return middleware

    # -- endpoints ----------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        """``GET /health``: liveness and the ledger's state (no authentication)."""
        from aiohttp import web

        ok = await asyncio.to_thread(self.ledger.check)
        offered = await self.offered()
        return web.json_response(
            {
                "status": "ok" if ok else "degraded",
                "ledger": "ok" if ok else "unreachable",
                "models": len(offered.ids),
            },
            status=200 if ok else 503,
        )

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the gateway's metrics, then the service's own."""
        from aiohttp import web

        from consortium_lab.gateway.metrics import CONTENT_TYPE

        await self.gatekeeper.check_metrics(
            request, require_admin=self.settings.metrics_require_admin
        )
        body = self.gateway.metrics.render() + self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def list_models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the models the caller may use."""
        from aiohttp import web

        identity = await self.gatekeeper.identify(request)
        rules = await self.rulebook.refresh()
        return web.json_response(await self.directory.listing(identity, rules))

    # -- running --------------------------------------------------------------------------
    async def serve(self, *, ready: Callable[[str], None] | None = None) -> None:
        """Serve until SIGINT/SIGTERM or ``max_lifetime``; ``ready(url)`` once listening."""
        from aiohttp import web

        await self.offered(refresh=True)
        from consortium_lab.service.preheat import preheat

        frozen = preheat()
        logger.debug("start-up heap frozen: %d objects", frozen)
        runner = web.AppRunner(
            self.app(),
            access_log=logging.getLogger("aiohttp.access")
            if logger.isEnabledFor(logging.DEBUG)
            else None,
            shutdown_timeout=5.0,
        )
        await runner.setup()
        sock = _listen(self.settings.host, self.settings.port)
        site = web.SockSite(runner, sock, shutdown_timeout=5.0)
        await site.start()
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if self.settings.max_lifetime is not None:
            loop.call_later(self.settings.max_lifetime, stop.set)
        logger.info("gateway service listening on %s", self.url)
        if ready is not None:
            ready(self.url)
        purging = asyncio.create_task(self.retention.run())
        try:
            await stop.wait()
        finally:
            logger.info("gateway service stopping")
            await RetentionPurger.stop(purging)
            await runner.cleanup()
            await self.aclose()

    def check_backends(self) -> None:
        """Ask Redis once before listening (a ``redis://`` ledger).

        Raises:
            RedisUnreachable: naming host:port, never the password.
        """
        from consortium_lab.gateway.ledger import RedisLedger

        if isinstance(self.ledger, RedisLedger):
            self.ledger.connect_check()

    async def aclose(self) -> None:
        """Release the authenticator, cache, quota storage and ledger."""
        with contextlib.suppress(Exception):
            await self.gatekeeper.close()
        with contextlib.suppress(Exception):
            await self.gateway.aclose()
        for close in (self.gateway.close, self.quotas.close, self.ledger.close):
            try:
                await asyncio.to_thread(close)
            except Exception:
                logger.exception("error while closing")


def _listen(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def run(settings: ServiceSettings) -> None:
    """Run the service in the foreground (what ``consortium-lab gateway`` does)."""
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger(__name__).setLevel(settings.log_level)
    if settings.log_level != "DEBUG":
        # The provider clients log every HTTP request at INFO: the gateway logs what matters.
        for name in ("httpx", "httpx2", "openai", "httpcore", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if settings.host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning("listening on %s, beyond this machine: serve it behind TLS", settings.host)

    def ready(url: str) -> None:
        print(f"consortium-lab gateway listening on {url}", flush=True)

    async def main() -> None:
        service = GatewayService(settings)
        await service.serve(ready=ready)

    asyncio.run(main())
