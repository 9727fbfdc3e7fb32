"""The hub's authenticators: OAuthenticator's, with the user name rule explained on refusal,
and the optional guest login.

JupyterHub refuses a name outside ``Authenticator.username_pattern`` with a bare 403; ours
names the rule, and raises before any user, group or server is created.
"""

from __future__ import annotations

import secrets
from typing import Any

from jupyterhub import orm
from jupyterhub.handlers import BaseHandler
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator
from tornado import web

from .settings import USERNAME_RULE

GUESTS_GROUP = "guests"
GUEST_PREFIX = "guest-"


class NamedRuleMixin:
    """Refuses a user name outside the pattern with a page that names the rule."""

    # Set from the settings by configure(): whether /hub/guest logs a guest in.
    guests_enabled = False

    def validate_username(self, username: str) -> bool:
        if super().validate_username(username):  # type: ignore[misc]
            return True
        # `%` would be read as a format by tornado's log line.
        shown = username.replace("%", "%%")
        raise web.HTTPError(403, f"Sign-in refused: {USERNAME_RULE}; {shown!r} does not.")

    def get_handlers(self, app: Any) -> list[tuple[str, type[BaseHandler]]]:
        handlers: list[tuple[str, type[BaseHandler]]] = super().get_handlers(app)  # type: ignore[misc]
        if self.guests_enabled:
            handlers.append(("/guest", GuestLoginHandler))
        return handlers


class ConsortiumGenericOAuthenticator(NamedRuleMixin, GenericOAuthenticator):
    """GenericOAuthenticator (any OpenID Connect provider) with the named rule."""


class ConsortiumGitHubOAuthenticator(NamedRuleMixin, GitHubOAuthenticator):
    """GitHubOAuthenticator (GitHub is OAuth2, not OIDC) with the named rule."""


class GuestLoginHandler(BaseHandler):
    """``/hub/guest``: a fresh ``guest-<12 hex>`` user in group ``guests``, logged in.

    A POST, so a link preview or a crawler following links creates no user. A guest does not
    pass the authenticator, so its ``post_auth_hook`` (the audit log's, ``audit.py``) is run
    here, as JupyterHub runs it after a login, with ``guest: True`` in the model; a hook that
    returns nothing refuses the guest before any user is created.
    """

    async def post(self) -> None:
        name = f"{GUEST_PREFIX}{secrets.token_hex(6)}"
        model = await self.authenticator.run_post_auth_hook(
            self, {"name": name, "admin": False, "guest": True}
        )
        if not model:
            raise web.HTTPError(403, "Guest sign-in refused.")
        user = self.user_from_username(name)
        group = orm.Group.find(self.db, GUESTS_GROUP)
        if group is None:
            group = orm.Group(name=GUESTS_GROUP)
            self.db.add(group)
        user.orm_user.groups.append(group)
        self.db.commit()
        self.set_login_cookie(user)
        self.redirect(self.get_next_url(user))
