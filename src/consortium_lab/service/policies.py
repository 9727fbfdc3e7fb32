"""The access rules and quota policies in force: the settings' baseline, with the overrides
made through the admin API (kept in the ledger) on top; and the run-time settings admins set
there (the chat's default consortium, the price table)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from consortium_lab.gateway.ledger import Ledger, Rules
from consortium_lab.gateway.quotas import QuotaManager, QuotaPolicy
from consortium_lab.service.settings import ServiceSettings

__all__ = ["RuleBook", "RuleQuotas"]


class RuleBook:
    """The current :class:`~consortium_lab.gateway.ledger.Rules`, re-read when the ledger's
    revision changes (an admin changed a rule here or on another replica), and the run-time
    settings (:meth:`~consortium_lab.gateway.ledger.Ledger.settings`) with them; each function
    of ``on_settings`` is told the new ones."""

    def __init__(self, ledger: Ledger, settings: ServiceSettings) -> None:
        self.ledger = ledger
        self.settings = settings
        self.rules = ledger.rules(settings.baseline_quotas(), settings.acl)
        self.runtime: dict[str, Any] = ledger.settings()
        self.on_settings: list[Callable[[dict[str, Any]], None]] = []
        self._revision = ledger.revision()

    async def refresh(self) -> Rules:
        """The rules in force now."""
        # Checked on every request, so a change applies to the next one on every replica; a
        # SQLite ledger answers without a worker thread (a WAL read never waits).
        revision = self.ledger.revision_nowait()
        if revision is None:
            revision = await asyncio.to_thread(self.ledger.revision)
        if revision != self._revision:
            rules = await asyncio.to_thread(
                self.ledger.rules, self.settings.baseline_quotas(), self.settings.acl
            )
            runtime = await asyncio.to_thread(self.ledger.settings)
            self.rules, self._revision = rules, revision
            if runtime != self.runtime:
                self.runtime = runtime
                for tell in self.on_settings:
                    tell(runtime)
        return self.rules


class RuleQuotas(QuotaManager):
    """A QuotaManager whose policies come from the service's current :class:`Rules`."""

    def __init__(
        self,
        rules: Callable[[], Rules],
        groups_of: Callable[[str], tuple[str, ...]],
        storage: str,
    ) -> None:
        super().__init__(storage=storage)
        self._rules = rules
        self._groups_of = groups_of

    def policy_for(self, user: str) -> QuotaPolicy:
        """The user's policy: their own, else their groups' most generous, else the default."""
        return self._rules().quota_for(user, self._groups_of(user))
