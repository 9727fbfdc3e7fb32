"""Logins in the gateway's audit log: an ``Authenticator.post_auth_hook`` that posts each
successful login to the gateway's ``POST /admin/audit`` with a gateway admin token. Guest
logins (``/hub/guest``) run the same hook and are logged with ``authenticator: "guest"``.

The gateway never sees a login itself (the hub does the OAuth dance), so the hub reports it.
A gateway that cannot be reached does not lock everyone out: the login goes on and the hub's
log names the entry that is missing from the audit log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

__all__ = ["LoginAudit"]

logger = logging.getLogger("consortium_hub.audit")

PostAuthHook = Callable[[Any, Any, Any], Awaitable[Any]]


class LoginAudit:
    """Posts ``{"actor": <user>, "action": "login", ...}`` to ``audit_url``; call it as the
    hub's ``post_auth_hook(authenticator, handler, authentication)``."""

    def __init__(self, audit_url: str, token: str, *, timeout: float = 10.0) -> None:
        self.audit_url = audit_url
        self.token = token
        self.timeout = timeout

    async def __call__(self, authenticator: Any, handler: Any, authentication: Any) -> Any:
        if not isinstance(authentication, dict) or not authentication.get("name"):
            return authentication  # refused: nobody logged in
        body = {
            "actor": authentication["name"],
            "action": "login",
            "target": None,
            "detail": {
                # A guest (auth.GuestLoginHandler) passes no authenticator: say so.
                "authenticator": (
                    "guest" if authentication.get("guest") else type(authenticator).__name__
                ),
                "admin": bool(authentication.get("admin")),
            },
        }
        request = HTTPRequest(
            self.audit_url,
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
            body=json.dumps(body),
            request_timeout=self.timeout,
        )
        try:
            await AsyncHTTPClient().fetch(request)
        except (HTTPClientError, OSError) as exc:
            logger.error(
                "the login of %s is not in the audit log: POST %s failed: %s",
                body["actor"],
                self.audit_url,
                exc,
            )
        return authentication
