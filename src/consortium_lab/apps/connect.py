"""Point this kernel's ``llm`` at a gateway service: :func:`connect`."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

__all__ = [
    "GATEWAY_TOKEN_ENV",
    "GATEWAY_URL_ENV",
    "GatewayConnectError",
    "connect",
    "gateway_key_name",
]

GATEWAY_URL_ENV = "CONSORTIUM_LAB_GATEWAY_URL"
"""Set (by the hub) where the chat must reach its models: the gateway service's URL."""
GATEWAY_TOKEN_ENV = "CONSORTIUM_LAB_GATEWAY_TOKEN"
"""The chat's token for that gateway (else ``$JUPYTERHUB_API_TOKEN``)."""

YAML_NAME = "extra-openai-models.yaml"
KEYS_NAME = "keys.json"
_KEYS_NOTE = {"// Note": "This file stores secret API credentials. Do not share!"}


class GatewayConnectError(RuntimeError):
    """The gateway could not be reached or refused the token (the message says which)."""


def _api_base(url: str) -> str:
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"url: expected the gateway's http(s) URL (got {url!r})")
    path = parsed.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, f"{path}/v1", "", ""))


def gateway_key_name(url: str) -> str:
    """The ``llm`` key name :func:`connect` stores a gateway's token under by default:
    ``consortium-gateway@<host:port/path>``, one per gateway."""
    parsed = urllib.parse.urlsplit(_api_base(url))
    return f"consortium-gateway@{parsed.netloc}{parsed.path.removesuffix('/v1')}"


def _models(api_base: str, token: str, timeout: float) -> list[str]:
    request = urllib.request.Request(
        f"{api_base}/models",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        detail = ""
        with contextlib.suppress(Exception):
            detail = json.loads(exc.read().decode("utf-8"))["error"]["message"]
        raise GatewayConnectError(
            f"the gateway at {api_base} answered {exc.code}: {detail or exc.reason}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise GatewayConnectError(f"cannot reach the gateway at {api_base}: {reason}") from None
    except ValueError as exc:
        raise GatewayConnectError(f"the gateway at {api_base} sent invalid JSON: {exc}") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise GatewayConnectError(f"the gateway at {api_base} sent no model list")
    return [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")]


def _write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def connect(
    url: str,
    token: str,
    *,
    prefix: str = "",
    key_name: str | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Register a gateway service's models with this kernel's ``llm``; return their ids.

    Reads ``{url}/v1/models`` with ``token`` (the caller's own token: the list holds only the
    models this user may use), then:

    - writes one entry per model into ``extra-openai-models.yaml`` in ``llm.user_dir()``:
      ``model_id`` = ``prefix`` + the gateway's id, ``model_name`` = the gateway's id,
      ``api_base`` = the gateway's ``/v1`` and ``api_key_name`` = ``key_name``. Entries of other
      endpoints are kept (comments in the file are not: it is rewritten); this gateway's earlier
      entries are replaced, so models the user may no longer use disappear. A model id that
      another endpoint already uses raises ``ValueError`` (pass a ``prefix``).
    - stores ``token`` in ``llm``'s ``keys.json`` under ``key_name`` (default
      :func:`gateway_key_name`), the file readable by its owner only (mode 0600).

    The models are then ordinary ``llm`` models (``llm -m``, ``llm.get_async_model``), streaming
    included, and the kernel holds the user's gateway token but no provider key. The gateway
    already applies the cache, retries, fallbacks and quotas, so give the kernel's engine a
    remote gateway, which does none of that again::

        from consortium_lab import Consortium, Gateway

        from consortium_lab.apps import connect
        models = connect("http://127.0.0.1:8750", token, prefix="gw-")
        consortium = Consortium(models=models[:3], arbiter=models[0],
                                gateway=Gateway(remote=True))

    Raises:
        GatewayConnectError: the gateway cannot be reached or refuses the token.
        ValueError: a bad URL, or a model id already registered for another endpoint.
    """
    import llm
    import yaml

    if not token or not token.strip():
        raise ValueError("token: the gateway token is empty")
    api_base = _api_base(url)
    key_name = key_name or gateway_key_name(url)
    remote = _models(api_base, token.strip(), timeout)

    folder = Path(llm.user_dir())
    folder.mkdir(parents=True, exist_ok=True)
    yaml_path = folder / YAML_NAME
    existing: list[dict[str, Any]] = []
    if yaml_path.exists():
        loaded = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or []
        if not isinstance(loaded, list):
            raise ValueError(f"{yaml_path}: expected a list of model entries")
        existing = [e for e in loaded if isinstance(e, dict)]

    def ours(entry: dict[str, Any]) -> bool:
        return entry.get("api_base") == api_base and entry.get("api_key_name") == key_name

    ids = [prefix + model for model in remote]
    taken = {e.get("model_id"): e for e in existing if not ours(e)}
    clashes = sorted(i for i in ids if i in taken)
    if clashes:
        raise ValueError(
            f"model ids already registered for another endpoint in {yaml_path}: "
            f"{', '.join(clashes)} (pass a prefix, e.g. prefix='gw-')"
        )
    entries = [e for e in existing if not ours(e)]
    entries += [
        {
            "model_id": prefix + model,
            "model_name": model,
            "api_base": api_base,
            "api_key_name": key_name,
        }
        for model in remote
    ]
    mode = yaml_path.stat().st_mode & 0o777 if yaml_path.exists() else 0o644
    _write_atomic(yaml_path, yaml.safe_dump(entries, sort_keys=False), mode=mode)

    keys_path = folder / KEYS_NAME
    keys: dict[str, Any] = dict(_KEYS_NOTE)
    if keys_path.exists():
        loaded_keys = json.loads(keys_path.read_text(encoding="utf-8") or "{}")
        if not isinstance(loaded_keys, dict):
            raise ValueError(f"{keys_path}: expected a JSON object")
        keys = loaded_keys
    keys[key_name] = token.strip()
    _write_atomic(keys_path, json.dumps(keys, indent=2), mode=0o600)
    return ids
