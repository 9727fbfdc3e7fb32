"""``consortium-analytics``: the admins' usage pages, a JupyterHub service.

Pages are protected by JupyterHub's ``HubOAuth`` (the hub's login, then OAuth): only a user
holding ``access:services!service=consortium-analytics`` (the hub gives it to group
``consortium-admins``) sees them; anyone else gets 403. They read only the gateway's admin API
(``CONSORTIUM_ANALYTICS_GATEWAY_URL`` with the admin token
``CONSORTIUM_ANALYTICS_GATEWAY_TOKEN``) and show calls, errors by outcome, mean latency, cache
hits, tokens and cost by user, model and day. ``?hash=1`` shows each user as the HMAC-SHA256
pseudonym keyed by ``CONSORTIUM_LAB_USER_HASH_SECRET`` (the gateway's own, stable across pages
and restarts); the switch is offered when ``CONSORTIUM_ANALYTICS_HASH_USERS=1``, and that
setting without the secret stops the service at start with one line naming both.

Run it as the hub runs an externally managed service: with ``JUPYTERHUB_API_URL``,
``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_SERVICE_NAME``, ``JUPYTERHUB_SERVICE_PREFIX``,
``JUPYTERHUB_CLIENT_ID`` (``service-consortium-analytics``) and
``JUPYTERHUB_OAUTH_CALLBACK_URL`` (``<prefix>oauth_callback``) set;
:func:`analytics_env` builds them.

The usage page draws :mod:`consortium_lab.analysis.usage_charts`'s specs with the bundled
vega (served under ``static/``); ``user?name=NAME`` shows a user's quota windows; forms set
user and group quotas, group access rules, the chat's defaults and the price table, a refusal
shown as the gateway words it. Each page view is written to the gateway's audit log
(``analytics.view``) before it is served. The HTML is in :mod:`.analytics_pages`, the admin
API client in :mod:`.analytics_gateway`.
"""

from __future__ import annotations

import html
import json
import os
import secrets
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from consortium_lab.apps import analytics_pages as pages
from consortium_lab.apps.analytics_gateway import GatewayAdmin, GatewayError

__all__ = [
    "ANALYTICS_SERVICE",
    "AnalyticsSettings",
    "analytics_env",
    "make_app",
    "read_settings",
    "serve",
]

ANALYTICS_SERVICE = "consortium-analytics"
GATEWAY_URL_ENV = "CONSORTIUM_ANALYTICS_GATEWAY_URL"
GATEWAY_TOKEN_ENV = "CONSORTIUM_ANALYTICS_GATEWAY_TOKEN"
HASH_SECRET_ENV = "CONSORTIUM_LAB_USER_HASH_SECRET"
HASH_SWITCH_ENV = "CONSORTIUM_ANALYTICS_HASH_USERS"
NO_FRAMING = "frame-ancestors 'none'"
TITLE = "Consortium analytics"


def analytics_env(
    base: Mapping[str, str], *, hub_api_url: str, api_token: str, name: str = ANALYTICS_SERVICE
) -> dict[str, str]:
    """``base`` with the variables the hub gives a service that logs users in with OAuth."""
    prefix = f"/services/{name}/"
    env = {k: v for k, v in base.items() if not k.startswith("JUPYTERHUB_")}
    env.update(
        JUPYTERHUB_API_URL=hub_api_url,
        JUPYTERHUB_API_TOKEN=api_token,
        JUPYTERHUB_SERVICE_NAME=name,
        JUPYTERHUB_SERVICE_PREFIX=prefix,
        JUPYTERHUB_CLIENT_ID=f"service-{name}",
        JUPYTERHUB_OAUTH_CALLBACK_URL=prefix + "oauth_callback",
        JUPYTERHUB_OAUTH_ACCESS_SCOPES=json.dumps([f"access:services!service={name}"]),
    )
    return env


@dataclass(frozen=True)
class AnalyticsSettings:
    """What the service reads from its environment (see the module's docstring)."""

    gateway: str
    """The gateway's base URL, without a trailing slash."""
    token: str
    """The gateway's admin token."""
    hash_switch: bool
    """Whether the pages offer "hash user names"."""
    secret: str
    """The HMAC key of the pseudonyms (the gateway's ``user_hash_secret``)."""


def read_settings(env: Mapping[str, str]) -> AnalyticsSettings:
    """The settings in ``env``.

    Raises:
        ValueError: one line naming the first missing or malformed setting.
    """
    for name in (GATEWAY_URL_ENV, GATEWAY_TOKEN_ENV):
        if not env.get(name, "").strip():
            raise ValueError(f"{name} is not set")
    gateway = env[GATEWAY_URL_ENV].strip().rstrip("/")
    if not gateway.startswith(("http://", "https://")):
        raise ValueError(f"{GATEWAY_URL_ENV}: expected an http(s) URL, got {gateway!r}")
    switch = env.get(HASH_SWITCH_ENV, "0").strip()
    if switch not in ("0", "1"):
        raise ValueError(f"{HASH_SWITCH_ENV}: expected 0 or 1, got {switch!r}")
    secret = env.get(HASH_SECRET_ENV, "")
    if switch == "1" and not secret:
        # Without the key a pseudonym is a plain hash anyone can recompute from a name list.
        raise ValueError(f"{HASH_SWITCH_ENV}=1 needs {HASH_SECRET_ENV} (the gateway's secret)")
    return AnalyticsSettings(gateway, env[GATEWAY_TOKEN_ENV].strip(), switch == "1", secret)


def make_app(settings: AnalyticsSettings) -> Any:
    """The tornado application, its routes under ``$JUPYTERHUB_SERVICE_PREFIX``; every
    answer, a redirect, an error or a 404 included, forbids framing."""
    from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
    from jupyterhub.utils import url_path_join
    from tornado import web

    from consortium_lab.analysis.usage_charts import usage_charts
    from consortium_lab.gateway.userhash import user_hash
    from consortium_lab.widget.vega import STATIC

    admin = GatewayAdmin(settings.gateway, settings.token)

    class Unframed(web.RequestHandler):
        def set_default_headers(self) -> None:
            self.set_header("Content-Security-Policy", NO_FRAMING)

        def write_error(self, status_code: int, **kwargs: Any) -> None:
            # tornado's own page shows only the status; ours says what went wrong (the
            # gateway unreachable, say), never a traceback.
            exc = kwargs.get("exc_info", (None, None, None))[1]
            message = getattr(exc, "log_message", None) or self._reason
            self.finish(
                f"<!doctype html><title>{status_code}</title>"
                f"<p class='cl-error'>{status_code}: {html.escape(str(message))}</p>"
            )

    class Missing(Unframed):
        def prepare(self) -> None:
            raise web.HTTPError(404)

    class Callback(Unframed, HubOAuthCallbackHandler):
        pass

    class Static(Unframed, web.StaticFileHandler):
        pass

    class Page(HubOAuthenticated, Unframed):
        @property
        def who(self) -> str:
            return str(self.current_user["name"])

        async def answer(self, pending: Awaitable[Any]) -> Any:
            """What the admin API answered, or a 502 page saying what went wrong."""
            try:
                return await pending
            except GatewayError as exc:
                raise web.HTTPError(502, str(exc)) from exc

        async def gateway(self, method: str, path: str, body: Any = None) -> Any:
            return await self.answer(admin.call(method, path, body))

        async def viewed(self, target: str) -> None:
            # Recorded before anything is shown: an unaudited view is never served.
            await self.gateway(
                "POST",
                "/admin/audit",
                {"actor": self.who, "action": "analytics.view", "target": target},
            )

        def done(self, note: str) -> None:
            self.redirect(f"./?{urlencode({'note': note})}")

    class Overview(Page):
        @web.authenticated
        async def get(self) -> None:
            hashed = settings.hash_switch and self.get_argument("hash", "0") == "1"
            await self.viewed("overview")
            tables = await self.answer(admin.usage_tables())
            if hashed:
                tables["user"] = [
                    {**r, "user": user_hash(str(r["user"]), settings.secret)}
                    for r in tables["user"]
                ]
            defaults = await self.gateway("GET", "/admin/defaults")
            prices = await self.gateway("GET", "/admin/prices")
            link = "?hash=0'>show names" if hashed else "?hash=1'>hash user names"
            switch = (
                f" · <a class='cl-hash-switch' href='{link}</a>" if settings.hash_switch else ""
            )
            body = (
                pages.charts_html(usage_charts(tables).to_dict())
                + pages.tables_html(tables)
                + pages.forms_html(self.xsrf_form_html(), defaults, prices)
            )
            note = self.get_argument("note", "")
            self.write(pages.page_html(TITLE, self.who, body, note=note, switch=switch))

    class User(Page):
        @web.authenticated
        async def get(self) -> None:
            name = self.get_argument("name", "").strip()
            if not name:
                self.done("Give a user name to see their quota windows.")
                return
            await self.viewed(f"user:{name}")
            info = await self.gateway("GET", f"/admin/users/{quote(name, safe='')}")
            self.write(pages.page_html(f"{TITLE}: {name}", self.who, pages.user_html(info)))

    class Form(Page):
        async def put(self, path: str, body: Any) -> Any | None:
            """The gateway's answer, or ``None`` after showing its refusal in plain words."""
            try:
                return await admin.call("PUT", path, body)
            except GatewayError as exc:
                self.done(str(exc))
                return None

        def field(self, name: str) -> str:
            return self.get_body_argument(name, "").strip()

    class Quota(Form):
        @web.authenticated
        async def post(self) -> None:
            kind, name = self.field("kind"), self.field("name")
            if kind not in ("users", "groups") or not name:
                self.done("Give the name of the user or group whose quota to set.")
                return
            policy = {f: _number(self.field(f)) for f, _ in pages.QUOTA_FIELDS}
            path = f"/admin/quotas/{kind}/{quote(name, safe='')}"
            if await self.put(path, policy) is not None:
                self.done(pages.quota_note(name, policy))

    class Acl(Form):
        @web.authenticated
        async def post(self) -> None:
            name = self.field("name")
            if not name:
                self.done("Give the name of the group whose models to set.")
                return
            models = [m.strip() for m in self.field("models").split(",") if m.strip()]
            if await self.put(f"/admin/acl/groups/{quote(name, safe='')}", {"models": models}):
                shown = ", ".join(models) or "no model"
                self.done(f"Group {name} may use {shown}.")

    class Defaults(Form):
        @web.authenticated
        async def post(self) -> None:
            members = [m.strip() for m in self.field("members").split(",") if m.strip()]
            body = {"members": members, "arbiter": self.field("arbiter")}
            if await self.put("/admin/defaults", body) is not None:
                self.done(f"The chat starts with {', '.join(members)}; arbiter {body['arbiter']}.")

    class Prices(Form):
        @web.authenticated
        async def post(self) -> None:
            try:
                table = json.loads(self.field("table"))
            except ValueError as exc:
                self.done(f"The price table is not valid JSON: {exc}.")
                return
            if await self.put("/admin/prices", table) is not None:
                self.done("The price table is set; it applies to the next call.")

    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    return web.Application(
        [
            (prefix, Overview),
            (url_path_join(prefix, "user"), User),
            (url_path_join(prefix, "quota"), Quota),
            (url_path_join(prefix, "acl"), Acl),
            (url_path_join(prefix, "defaults"), Defaults),
            (url_path_join(prefix, "prices"), Prices),
            (url_path_join(prefix, "static/(chart\\.(?:js|css))"), Static, {"path": str(STATIC)}),
            (url_path_join(prefix, "oauth_callback"), Callback),
        ],
        default_handler_class=Missing,
        cookie_secret=secrets.token_bytes(32),
        xsrf_cookies=True,
    )


def _number(raw: str) -> int | str | None:
    """A form's quota value: empty is no limit; anything not a whole number goes to the
    gateway as typed, whose refusal names the field."""
    return int(raw) if raw.isdigit() else raw or None


def serve(port: int, env: Mapping[str, str] = os.environ, address: str = "127.0.0.1") -> int:
    """Serve on ``address``:``port`` until interrupted; 1 after one line on stderr naming a bad
    setting or the missing chart bundle, before anything listens.

    ``address`` is loopback on one machine (the hub's proxy is beside it); in a Kubernetes pod
    (hub/k8s/analytics.yaml) it is 0.0.0.0, for the proxy's pod.
    """
    import asyncio
    import sys

    from consortium_lab.widget.vega import STATIC

    try:
        settings = read_settings(env)
        if not (STATIC / "chart.js").is_file():
            raise ValueError(
                f"the chart bundle {STATIC / 'chart.js'} is missing: run `npm ci && npm run"
                " build` in widgets/ (pip install does it through the build hook)"
            )
    except ValueError as exc:
        print(f"consortium-analytics: {exc}", file=sys.stderr)
        return 1

    async def main() -> None:
        make_app(settings).listen(port, address=address)
        print(f"consortium-analytics listening on http://{address}:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    return 0


if __name__ == "__main__":
    import sys

    # python -m consortium_lab.apps.analytics PORT [ADDRESS]
    sys.exit(serve(int(sys.argv[1]), address=sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"))
