"""``consortium-analytics``: the admins' usage pages, a JupyterHub service.

Pages are protected by JupyterHub's ``HubOAuth`` (the hub's login, then OAuth): only a user
holding ``access:services!service=consortium-analytics`` (the hub gives it to group
``consortium-admins``) sees them; anyone else gets 403. They read only the gateway's admin API
(``CONSORTIUM_ANALYTICS_GATEWAY_URL`` with the admin token
``CONSORTIUM_ANALYTICS_GATEWAY_TOKEN``) and show calls, errors by outcome, mean latency, cache
hits, tokens and cost by user, model and day. ``?hash=1`` shows each user as the HMAC-SHA256
pseudonym keyed by ``CONSORTIUM_LAB_USER_HASH_SECRET`` (the gateway's own, stable across pages
and restarts).

Run it as the hub runs an externally managed service: with ``JUPYTERHUB_API_URL``,
``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_SERVICE_NAME``, ``JUPYTERHUB_SERVICE_PREFIX``,
``JUPYTERHUB_CLIENT_ID`` (``service-consortium-analytics``) and
``JUPYTERHUB_OAUTH_CALLBACK_URL`` (``<prefix>oauth_callback``) set;
:func:`analytics_env` builds them.

A form sets a user's daily request quota (``PUT /admin/quotas/users/<name>`` of the gateway;
the user's next call is checked against it). Not built yet: the Altair charts, a user's quota
windows, and the group, access-rule, defaults and price forms.
"""

from __future__ import annotations

import html
import json
import os
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

__all__ = ["ANALYTICS_SERVICE", "analytics_env", "make_app", "serve"]

ANALYTICS_SERVICE = "consortium-analytics"
GATEWAY_URL_ENV = "CONSORTIUM_ANALYTICS_GATEWAY_URL"
GATEWAY_TOKEN_ENV = "CONSORTIUM_ANALYTICS_GATEWAY_TOKEN"
HASH_SECRET_ENV = "CONSORTIUM_LAB_USER_HASH_SECRET"
# (title, group_by) of each table, in page order.
TABLES = (
    ("Calls by outcome", "outcome"),
    ("By user", "user"),
    ("By model", "model"),
    ("By day", "day"),
)
COLUMNS = ("calls", "ok", "failed", "cached", "latency_ms_avg", "input_tokens", "output_tokens")


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


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    return html.escape("-" if value is None else str(value))


def render_table(title: str, key: str, rows: list[dict[str, Any]]) -> str:
    """One usage table (``rows`` of ``GET /admin/usage?group_by=key``) as HTML."""
    head = "".join(f"<th>{c}</th>" for c in (key, *COLUMNS, "cost", "cache hit rate"))
    body = []
    for row in rows:
        hits = f"{row['cached'] / row['calls']:.0%}" if row.get("calls") else "-"
        cells = [row.get(key), *(row.get(c) for c in COLUMNS), row.get("cost"), hits]
        body.append("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in cells) + "</tr>")
    return (
        f"<h2>{html.escape(title)}</h2><table class='cl-usage' data-by='{key}'>"
        f"<tr>{head}</tr>{''.join(body)}</table>"
    )


def make_app() -> Any:
    """The tornado application, its routes under ``$JUPYTERHUB_SERVICE_PREFIX``."""
    from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
    from jupyterhub.utils import url_path_join
    from tornado import web
    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    gateway = os.environ[GATEWAY_URL_ENV].rstrip("/")
    token = os.environ[GATEWAY_TOKEN_ENV]
    secret = os.environ.get(HASH_SECRET_ENV, "")

    class Page(HubOAuthenticated, web.RequestHandler):
        def set_default_headers(self) -> None:
            self.set_header("Content-Security-Policy", "frame-ancestors 'none'")

        async def usage(self, group_by: str) -> list[dict[str, Any]]:
            url = f"{gateway}/admin/usage?{urlencode({'group_by': group_by})}"
            response = await AsyncHTTPClient().fetch(
                url, headers={"Authorization": f"Bearer {token}"}
            )
            rows: list[dict[str, Any]] = json.loads(response.body)["rows"]
            return rows

        @web.authenticated
        async def get(self) -> None:
            from consortium_lab.gateway.userhash import user_hash

            hashed = self.get_argument("hash", "0") == "1"
            if hashed and not secret:
                raise web.HTTPError(503, f"hashing user names needs ${HASH_SECRET_ENV}")
            parts = []
            for title, key in TABLES:
                try:
                    rows = await self.usage(key)
                except (HTTPClientError, OSError) as exc:
                    raise web.HTTPError(502, f"the gateway at {gateway} failed: {exc}") from exc
                if hashed and key == "user":
                    rows = [{**r, "user": user_hash(str(r["user"]), secret)} for r in rows]
                parts.append(render_table(title, key, rows))
            switch = "?hash=0'>show names" if hashed else "?hash=1'>hash user names"
            note = html.escape(self.get_argument("note", ""))
            self.write(
                "<!doctype html><html><head><title>Consortium analytics</title></head><body>"
                f"<p>Signed in as <b>{html.escape(self.current_user['name'])}</b> · "
                f"<a class='cl-hash-switch' href='{switch}</a></p>"
                f"<p class='cl-note' role='status'>{note}</p>"
                "<form class='cl-quota-form' method='post' action='quota'>"
                f"{self.xsrf_form_html()}<label>User <input name='user'></label> "
                "<label>Requests per day <input name='requests_per_day'></label> "
                "<button>Set quota</button></form>"
                f"{''.join(parts)}</body></html>"
            )

    class Quota(Page):
        @web.authenticated
        async def post(self) -> None:
            user = self.get_body_argument("user", "").strip()
            raw = self.get_body_argument("requests_per_day", "").strip()
            limit = int(raw) if raw.isdigit() else raw or None
            response = await AsyncHTTPClient().fetch(
                f"{gateway}/admin/quotas/users/{quote(user, safe='')}",
                method="PUT",
                body=json.dumps({"requests_per_day": limit}),
                headers={"Authorization": f"Bearer {token}"},
                raise_error=False,
            )
            if response.code == 200:
                note = f"{user}: {limit} requests per day." if limit else f"{user}: no daily limit."
            else:
                try:
                    note = json.loads(response.body)["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    note = f"the gateway answered {response.code}"
            self.redirect(f"./?{urlencode({'note': note})}")

    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    return web.Application(
        [
            (prefix, Page),
            (url_path_join(prefix, "quota"), Quota),
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        cookie_secret=secrets.token_bytes(32),
        xsrf_cookies=True,
    )


def serve(port: int) -> None:
    """Serve on 127.0.0.1:``port`` until interrupted."""
    import asyncio

    async def main() -> None:
        make_app().listen(port, address="127.0.0.1")
        print(f"consortium-analytics listening on http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


if __name__ == "__main__":
    import sys

    serve(int(sys.argv[1]))
