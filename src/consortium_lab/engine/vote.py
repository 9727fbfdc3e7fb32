"""Vote mode (``mode="vote"``): the members' answers counted, the most frequent one wins.

No arbiter is asked. Each member's answer is reduced to a key by an *extractor* (by default
:func:`default_extractor`: the parsed ``<answer>`` text with its whitespace collapsed and its
case folded); members whose answer gives no key (the extractor returned ``None`` or an empty
string) abstain. The key with the most votes wins; a tie for first place is broken by the
voters' stated confidence summed (an unstated confidence counts as 0), then by the config
order of each answer's first voter, and the record says which rule decided it.

The outcome is a :class:`~consortium_lab.engine.records.SynthesisRecord` like an arbiter's:
``synthesis`` is the winning answer, ``confidence`` its share of the votes cast, ``dissent``
the losing answers with their counts, ``votes`` the whole tally.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from consortium_lab.engine.events import SynthesisReady
from consortium_lab.engine.records import MemberRecord, TieBreak, VoteCount

__all__ = [
    "VOTE_MODEL",
    "Extractor",
    "Tally",
    "default_extractor",
    "tally",
    "vote_decision",
]

Extractor = Callable[[str], str | None]
"""Turns a member's parsed answer into the key its vote counts under (``None``: abstains)."""

VOTE_MODEL = "vote"
"""What a vote's decision names as its ``model`` (no model decides a vote)."""


def default_extractor(answer: str) -> str | None:
    """The documented default key: ``answer`` with runs of whitespace made one space, trimmed,
    and case-folded (``" Paris\\n"`` and ``"paris"`` vote together)."""
    return " ".join(answer.split()).casefold()


@dataclass
class Tally:
    """The outcome of one vote."""

    votes: list[VoteCount] = field(default_factory=list)
    """Every distinct answer, the winner first, then by count, confidence and order."""
    abstained: list[str] = field(default_factory=list)
    """Members ('model#instance') whose answer gave no key."""
    tie_break: TieBreak | None = None

    @property
    def cast(self) -> int:
        """How many votes were cast (members who answered and did not abstain)."""
        return sum(v.count for v in self.votes)

    @property
    def winner(self) -> VoteCount | None:
        """The winning answer (None when no vote was cast)."""
        return self.votes[0] if self.votes else None

    @property
    def share(self) -> float | None:
        """The winner's share of the votes cast."""
        return self.votes[0].count / self.cast if self.votes else None

    def dissent(self) -> str:
        """The losing answers with their counts, one per line, most votes first."""
        return "\n".join(
            f"{_quote(v.answer)}: {v.count} vote{'' if v.count == 1 else 's'}"
            f" ({', '.join(v.members)})"
            for v in self.votes[1:]
        )

    def summary(self) -> str:
        """One paragraph for the decision's ``analysis``: the count, the tie, the abstentions."""
        if not self.votes:
            return "No vote was cast: no member's answer could be read."
        top = self.votes[0]
        text = (
            f"{top.count} of {self.cast} votes ({_percent(self.share)}) for {_quote(top.answer)}; "
            f"{len(self.votes)} distinct answer{'' if len(self.votes) == 1 else 's'}."
        )
        if self.tie_break is not None:
            tied = [v for v in self.votes if v.count == top.count]
            rule = (
                "the voters' stated confidence"
                if self.tie_break == "confidence"
                else "config order (the stated confidence tied too)"
            )
            text += f" Tie between {len(tied)} answers with {top.count} votes, broken by {rule}."
        if self.abstained:
            text += f" No readable answer from {', '.join(self.abstained)}."
        return text


def tally(answers: Iterable[MemberRecord], extractor: Extractor | None = None) -> Tally:
    """Count ``answers`` (members' answer records, in config order) by their extracted keys.

    Raises:
        TypeError: the extractor returned something other than a string or ``None``.
    """
    extract = extractor or default_extractor
    groups: dict[str, VoteCount] = {}
    first_seen: dict[str, int] = {}
    abstained: list[str] = []
    for position, record in enumerate(answers):
        who = f"{record.model}#{record.instance}"
        key = extract(record.answer)
        if key is not None and not isinstance(key, str):
            raise TypeError(
                f"vote extractor: expected a string or None for {who}'s answer, "
                f"got {type(key).__name__} ({key!r})"
            )
        if not key:
            abstained.append(who)
            continue
        vote = groups.get(key)
        if vote is None:
            vote = groups[key] = VoteCount(answer=record.answer.strip(), key=key, count=0)
            first_seen[key] = position
        vote.count += 1
        vote.members.append(who)
        vote.confidence += record.confidence or 0.0
    ordered = sorted(groups.values(), key=lambda v: (-v.count, -v.confidence, first_seen[v.key]))
    return Tally(votes=ordered, abstained=abstained, tie_break=_tie_break(ordered))


def _tie_break(ordered: list[VoteCount]) -> TieBreak | None:
    if len(ordered) < 2 or ordered[0].count != ordered[1].count:
        return None
    return "confidence" if ordered[0].confidence != ordered[1].confidence else "order"


def _quote(answer: str, limit: int = 80) -> str:
    line = " ".join(answer.split())
    return repr(line if len(line) <= limit else line[: limit - 1] + "…")


def _percent(share: float | None) -> str:
    return f"{round((share or 0) * 100)}%"


def vote_decision(
    run_id: str,
    iteration: int,
    answers: Iterable[MemberRecord],
    extractor: Extractor | None = None,
) -> SynthesisReady:
    """The decision event of a vote over ``answers`` (in config order), shaped as an
    arbiter's: ``parse_ok`` is False, with a warning, when no vote could be cast."""
    result = tally(answers, extractor)
    winner = result.winner
    return SynthesisReady(
        run_id=run_id,
        iteration=iteration,
        model=VOTE_MODEL,
        synthesis=winner.answer if winner else "",
        confidence=result.share,
        analysis=result.summary(),
        dissent=result.dissent(),
        parse_ok=winner is not None,
        warnings=[] if winner else ["no member's answer could be read: no vote was cast"],
        votes=result.votes,
        tie_break=result.tie_break,
    )
