"""The analytics service's only data source: the gateway's admin API, called with the admin
token (tornado's async client, the service's own event loop).

Every failure becomes :class:`GatewayError` with a plain sentence: the gateway's own error
message (it names the bad field) when it answered, else what went wrong reaching it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

__all__ = ["USAGE_KEYS", "GatewayAdmin", "GatewayError"]

USAGE_KEYS = ("outcome", "user", "model", "day")
"""The ``group_by`` of each usage table the pages show."""


class GatewayError(Exception):
    """The gateway refused or could not be reached; ``str()`` is the sentence to show."""


class GatewayAdmin:
    """The admin API of the gateway at ``url`` (no trailing slash), as ``token``."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """``method path`` with ``body`` as JSON; the decoded answer.

        Raises:
            GatewayError: not a 2xx answer, or the gateway was not reached.
        """
        from tornado.httpclient import AsyncHTTPClient

        try:
            response = await AsyncHTTPClient().fetch(
                self.url + path,
                method=method,
                body=None if body is None else json.dumps(body),
                headers={"Authorization": f"Bearer {self.token}"},
                raise_error=False,
            )
        except OSError as exc:
            raise GatewayError(f"The gateway at {self.url} could not be reached: {exc}.") from exc
        if response.code == 599:  # tornado's code for no HTTP answer at all
            raise GatewayError(f"The gateway at {self.url} could not be reached: {response.error}.")
        try:
            answer = json.loads(response.body or b"null")
        except ValueError:
            answer = None
        if 200 <= response.code < 300:
            return answer
        try:
            message = str(answer["error"]["message"])
        except (TypeError, KeyError):
            message = f"the gateway answered {response.code} to {method} {path}"
        # As written: it starts with the field's name (``arbiter: ...``), which must stay exact.
        raise GatewayError(message)

    async def usage(self, group_by: str) -> list[dict[str, Any]]:
        """The rows of ``GET /admin/usage?group_by=...``."""
        answer = await self.call("GET", f"/admin/usage?{urlencode({'group_by': group_by})}")
        rows: list[dict[str, Any]] = answer["rows"]
        return rows

    async def usage_tables(self) -> dict[str, list[dict[str, Any]]]:
        """One usage table per key of :data:`USAGE_KEYS`."""
        return {key: await self.usage(key) for key in USAGE_KEYS}
