"""Tolerant readers for what consortium members and arbiters write.

Everything here is pure: no I/O and no model calls. The ``parse_*`` functions never raise,
whatever string they are given (empty, truncated, binary junk, huge); problems are reported
as human-readable ``warnings`` instead. Confidences and thresholds follow the one rule of
:func:`consortium_lab.config.rules.normalize_confidence`.
"""

from __future__ import annotations

from consortium_lab.config.rules import normalize_confidence
from consortium_lab.prompts.parsing.arbiter import ArbiterParse, parse_arbiter_response
from consortium_lab.prompts.parsing.member import MemberParse, parse_member_response
from consortium_lab.prompts.parsing.ranking import parse_ranking
from consortium_lab.prompts.parsing.scan import parse_confidence_text

__all__ = [
    "ArbiterParse",
    "MemberParse",
    "normalize_confidence",
    "parse_arbiter_response",
    "parse_confidence_text",
    "parse_member_response",
    "parse_ranking",
]
