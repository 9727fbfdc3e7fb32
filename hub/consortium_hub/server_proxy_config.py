"""jupyter-standaloneproxy's configuration for one user server (copied into the user's
private folder as ``jupyter_standalone_proxy_config.py``, read from ``JUPYTER_CONFIG_DIR``).

- Sends Voila's token (from ``voila.json`` beside this file) with every forwarded request, so
  Voila's loopback port answers only the proxy; the token is on no command line.
- Answers the server's root with a redirect to the chat: the chat is the landing page.
- Forbids framing of every page (Voila's own header allows its own origin).
"""

# ruff: noqa: F821  (`c` is given by traitlets when it loads this file)
# mypy: disable-error-code="name-defined"
import json
import os

with open(os.path.join(os.path.dirname(__file__), "voila.json"), encoding="utf-8") as _file:
    _token = json.load(_file)["Voila"]["token"]

c.StandaloneProxyServer.request_headers_override = {"Authorization": f"token {_token}"}

_PREFIX = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").rstrip("/")
_CHAT = f"{_PREFIX}/voila/render/chat.ipynb"


def _landing_and_framing(request, response):
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    if request.method == "GET" and request.path.rstrip("/") == _PREFIX:
        response.code = 302
        response.reason = "Found"
        response.headers["Location"] = _CHAT
        response.headers["Content-Type"] = "text/plain"
        response.body = b""


c.StandaloneProxyServer.rewrite_response = [_landing_and_framing]
