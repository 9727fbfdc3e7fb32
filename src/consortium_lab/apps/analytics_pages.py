"""The HTML of the analytics pages: usage tables, the charts' spec and loader, a user's quota
windows, and the admin forms. Pure functions of what the gateway answered; the handlers are
in :mod:`consortium_lab.apps.analytics`.

Charts are drawn by the package's bundled vega (``static/chart.js``, served by the service
itself under ``static/``), so the pages need no CDN.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "QUOTA_FIELDS",
    "charts_html",
    "forms_html",
    "page_html",
    "quota_note",
    "render_table",
    "user_html",
]

TABLES = (
    ("Calls by outcome", "outcome"),
    ("By user", "user"),
    ("By model", "model"),
    ("By day", "day"),
)
COLUMNS = ("calls", "ok", "failed", "cached", "latency_ms_avg", "input_tokens", "output_tokens")

QUOTA_FIELDS = (
    ("requests_per_day", "Requests per day"),
    ("requests_per_minute", "Requests per minute"),
    ("tokens_per_day", "Tokens per day"),
    ("tokens_per_minute", "Tokens per minute"),
    ("max_output_tokens_per_call", "Max output tokens per call"),
)
"""(field of the gateway's quota policy, label) of each quota form input."""

_LOADER = """
import chart from "./static/chart.js";
const spec = JSON.parse(document.getElementById("cl-spec").textContent);
const model = { get: (name) => (name === "spec" ? spec : undefined), on: () => {} };
chart.render({ model, el: document.getElementById("cl-charts") });
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    return html.escape("-" if value is None else str(value))


def render_table(title: str, key: str, rows: Sequence[Mapping[str, Any]]) -> str:
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


def tables_html(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Every usage table, in page order."""
    return "".join(render_table(title, key, tables[key]) for title, key in TABLES)


def charts_html(spec: Mapping[str, Any]) -> str:
    """The Vega-Lite ``spec`` and the module that renders it with the bundled vega."""
    # "<\/" reads as "/" in JSON, and no "</script" can end the element early.
    data = json.dumps(spec).replace("</", "<\\/")
    return (
        "<div id='cl-charts'></div>"
        f"<script type='application/json' id='cl-spec'>{data}</script>"
        f"<script type='module'>{_LOADER}</script>"
    )


def page_html(title: str, user: str, body: str, *, note: str = "", switch: str = "") -> str:
    """A whole page: who is signed in, the last form's outcome (``note``), then ``body``."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<link rel='stylesheet' href='./static/chart.css'>"
        "<style>body{font-family:sans-serif;margin:1.5em} td,th{padding:2px 8px}"
        " form{margin:.5em 0}</style></head><body>"
        f"<p>Signed in as <b>{html.escape(user)}</b>{switch} · <a href='./'>usage</a></p>"
        f"<p class='cl-note' role='status'>{html.escape(note)}</p>{body}</body></html>"
    )


def _quota_form(kind: str, label: str, css: str, xsrf: str) -> str:
    inputs = "".join(
        f"<label>{text} <input name='{field}' inputmode='numeric'></label> "
        for field, text in QUOTA_FIELDS
    )
    return (
        f"<form class='{css}' method='post' action='quota'>{xsrf}"
        f"<input type='hidden' name='kind' value='{kind}'>"
        f"<label>{label} <input name='name'></label> {inputs}"
        f"<button>Set {label.lower()} quota</button></form>"
    )


def forms_html(xsrf: str, defaults: Mapping[str, Any], prices: Mapping[str, Any]) -> str:
    """The admin forms, prefilled with the defaults and price table in force."""
    members = html.escape(", ".join(defaults.get("members", [])))
    arbiter = html.escape(str(defaults.get("arbiter", "")))
    table = html.escape(json.dumps(prices.get("table", {}), indent=2))
    source = html.escape(str(prices.get("source", "")))
    return (
        "<h2>Settings</h2>"
        "<form class='cl-user-form' method='get' action='user'>"
        "<label>Quota windows of user <input name='name'></label> <button>Show</button></form>"
        + _quota_form("users", "User", "cl-quota-form", xsrf)
        + _quota_form("groups", "Group", "cl-group-quota-form", xsrf)
        + f"<form class='cl-acl-form' method='post' action='acl'>{xsrf}"
        "<label>Group <input name='name'></label> "
        "<label>Models (comma-separated ids or patterns) <input name='models'></label> "
        "<button>Set the group's models</button></form>"
        f"<form class='cl-defaults-form' method='post' action='defaults'>{xsrf}"
        f"<label>Default members <input name='members' value='{members}'></label> "
        f"<label>Default arbiter <input name='arbiter' value='{arbiter}'></label> "
        "<button>Set defaults</button></form>"
        f"<form class='cl-prices-form' method='post' action='prices'>{xsrf}"
        f"<label>Price table (JSON; now from {source})<br>"
        f"<textarea name='table' rows='12' cols='80'>{table}</textarea></label><br>"
        "<button>Set prices</button></form>"
    )


def quota_note(name: str, policy: Mapping[str, Any]) -> str:
    """The sentence confirming ``name``'s new quota policy."""
    limits = [
        f"{policy[field]} {text.lower()}" for field, text in QUOTA_FIELDS if policy.get(field)
    ]
    return f"{name}: {', '.join(limits)}." if limits else f"{name}: no limits."


def user_html(info: Mapping[str, Any]) -> str:
    """A user's groups, allowed models and quota windows (``GET /admin/users/NAME``)."""
    rows = "".join(
        f"<tr><td>{html.escape(window)}</td><td>{_cell(w.get('used'))}</td>"
        f"<td>{_cell(w.get('limit'))}</td><td>{_cell(w.get('remaining'))}</td>"
        f"<td>{_cell(w.get('resets_at'))}</td></tr>"
        for window, w in info.get("usage", {}).items()
    )
    groups = ", ".join(info.get("groups", [])) or "none"
    models = ", ".join(info.get("models", [])) or "none"
    return (
        f"<h2>Quota windows of {html.escape(str(info.get('user')))}</h2>"
        f"<p>Groups: {html.escape(groups)}. Allowed models: {html.escape(models)}.</p>"
        "<table class='cl-windows'><tr><th>window</th><th>used</th><th>limit</th>"
        f"<th>remaining</th><th>resets at</th></tr>{rows}</table>"
    )
