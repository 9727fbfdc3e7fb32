"""Where the widgets' front end comes from.

``widgets/build.mjs`` builds each entry (``widget``: the chat, ``chart``: the Vega charts)
twice:

- into ``consortium_lab/static/`` as one file each: the widget carries it as text, which
  works in any front end (JupyterLab, Notebook, VS Code, Voila);
- into the ``consortium`` Voila template's ``static/`` folder, split: what a page does not use
  yet (vega, until a chart is drawn) is a chunk of its own. A kernel that Voila started for a
  page of that template (``$CONSORTIUM_LAB_WIDGET_ASSETS`` is ``voila-template``, set by
  :func:`consortium_lab.apps.voila.voila_env`) hands the page a few lines that import the
  bundle by URL from Voila instead: the page fetches ~0.16 MB of script rather than receiving
  ~1.8 MB through the kernel's websocket, parses it as a cacheable script, and loads vega only
  for a chart, KaTeX (with its CSS) only for a formula and highlight.js only for a code block.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["SERVED", "SERVED_ENV", "STATIC", "asset", "bundle"]

HERE = Path(__file__).resolve().parent.parent
STATIC = HERE / "static"
"""Where ``widgets/build.mjs`` writes the one-file bundle (``pip install`` runs it)."""
SERVED = HERE / "jupyter" / "voila" / "templates" / "consortium" / "static"
"""Where it writes the split bundle that Voila serves beside the template's pages."""
SERVED_ENV = "CONSORTIUM_LAB_WIDGET_ASSETS"
"""``voila-template`` in a kernel of a page Voila serves through the consortium template."""

_MISSING_BUNDLE = """
export default {
  render({ el }) {
    el.textContent = "consortium_lab: the widget's front end is not built. Run `npm ci && "
      + "npm run build` in widgets/ (pip install does it through the build hook).";
  },
};
"""

# Voila's page names its base URL on <body> (the consortium template writes it); the
# template's static files are served under it. The stylesheet is awaited before the module
# renders, so the widget never shows unstyled; a second widget of the page reuses both.
_LOADER = """// consortium_lab: the {entry} bundle, served by Voila beside this page.
const base = document.body?.dataset.baseUrl ?? "/voila/";
const root = new URL(base + "templates/consortium/static/", document.baseURI);
let link = document.head.querySelector('link[data-cl-bundle="{entry}"]');
if (!link) {{
  link = document.createElement("link");
  link.rel = "stylesheet";
  link.dataset.clBundle = "{entry}";
  const settle = () => (link.dataset.state = "settled");
  link.addEventListener("load", settle, {{ once: true }});
  link.addEventListener("error", settle, {{ once: true }});
  link.href = new URL("{entry}.css?v={version}", root).href;
  document.head.append(link);
}}
if (link.dataset.state !== "settled") {{
  await new Promise((done) => {{
    link.addEventListener("load", done, {{ once: true }});
    link.addEventListener("error", done, {{ once: true }});
  }});
}}
export default (await import(new URL("{entry}.js?v={version}", root).href)).default;
"""


def asset(name: str) -> Path | str:
    """The one-file bundle's ``name``, or a stand-in that says the bundle is missing."""
    path = STATIC / name
    if path.is_file():
        return path
    return _MISSING_BUNDLE if name.endswith(".js") else ""


def bundle(entry: str) -> tuple[Path | str, Path | str]:
    """``(_esm, _css)`` for a widget of ``entry`` (``"widget"`` or ``"chart"``): the loader
    of the served bundle in a consortium-template Voila kernel, else the one-file bundle."""
    served = [SERVED / f"{entry}.js", SERVED / f"{entry}.css"]
    if os.environ.get(SERVED_ENV) == "voila-template" and all(p.is_file() for p in served):
        # The entries keep their names across builds (the chunks they import are named by
        # their content): the version makes a rebuilt entry a new URL for the browser's cache.
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in served)).hexdigest()[:16]
        return _LOADER.format(entry=entry, version=digest), ""
    return asset(f"{entry}.js"), asset(f"{entry}.css")
