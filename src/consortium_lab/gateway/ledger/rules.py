"""Quota policies and access rules by subject, and how the ones that apply to a user combine."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from consortium_lab.gateway.quotas import QuotaPolicy

__all__ = ["Rules", "check_acl_subject", "check_patterns", "check_quota_subject"]

_NAME = re.compile(r"^[^\s:][^\s]{0,254}$")


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"{kind} name {name!r} is not valid (1-255 characters, no spaces, not starting "
            "with ':')"
        )
    return name


def _check_subject(subject: str, *, everyone: str, what: str) -> str:
    if subject == everyone:
        return subject
    kind, sep, name = subject.partition(":")
    if not sep or kind not in ("user", "group"):
        raise ValueError(
            f"{what} subject must be '{everyone}', 'user:<name>' or 'group:<name>' "
            f"(got {subject!r})"
        )
    _check_name(kind, name)
    return subject


def check_quota_subject(subject: str) -> str:
    """Validate a quota subject: ``default``, ``user:<name>`` or ``group:<name>``."""
    return _check_subject(subject, everyone="default", what="quota")


def check_acl_subject(subject: str) -> str:
    """Validate an ACL subject: ``*`` (everyone), ``user:<name>`` or ``group:<name>``."""
    return _check_subject(subject, everyone="*", what="ACL")


def check_patterns(models: Iterable[str]) -> list[str]:
    """Validate the model patterns of an access rule: model ids or globs, no blank ones."""
    patterns = list(models)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip() or pattern != pattern.strip():
            raise ValueError(
                f"models: every entry must be a model id or glob pattern (got {pattern!r})"
            )
    return patterns


_UNLIMITED = QuotaPolicy()


@dataclass(frozen=True)
class Rules:
    """A snapshot of quota policies and access rules, and how they apply to one user.

    Quotas: a user's own policy if there is one; else, if any of the user's groups has one,
    the most generous combination of those (per field the largest limit, no limit beating any
    limit); else the ``default`` policy; else no limit.

    Access: the most specific rule decides. A user's own rule if there is one; else the union of
    the rules of the user's groups, if any group has one; else the ``*`` rule; else nothing is
    allowed. So ``{"*": ["*"], "user:guest": ["small-*"]}`` lets everybody use every model except
    ``guest``, who may use only the ``small-`` ones.
    """

    quotas: Mapping[str, QuotaPolicy] = field(default_factory=dict)
    acl: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def quota_for(self, user: str, groups: Iterable[str] = ()) -> QuotaPolicy:
        """The quota policy that applies to ``user`` in ``groups``."""
        own = self.quotas.get(f"user:{user}")
        if own is not None:
            return own
        found = [p for g in groups if (p := self.quotas.get(f"group:{g}")) is not None]
        if found:
            merged: dict[str, int | None] = {}
            for name in QuotaPolicy.model_fields:
                values = [getattr(p, name) for p in found]
                merged[name] = None if any(v is None for v in values) else max(values)
            return QuotaPolicy(**merged)
        return self.quotas.get("default") or _UNLIMITED

    def patterns_for(self, user: str, groups: Iterable[str] = ()) -> tuple[str, ...]:
        """The model patterns ``user`` in ``groups`` may use (empty: none)."""
        own = self.acl.get(f"user:{user}")
        if own is not None:
            return tuple(own)
        found = [r for g in groups if (r := self.acl.get(f"group:{g}")) is not None]
        if found:
            return tuple(dict.fromkeys(p for rule in found for p in rule))
        return tuple(self.acl.get("*", ()))

    def allows(self, user: str, groups: Iterable[str], model: str) -> bool:
        """Whether ``user`` in ``groups`` may use ``model``."""
        return any(fnmatch.fnmatchcase(model, p) for p in self.patterns_for(user, groups))
