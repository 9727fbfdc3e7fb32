"""What model calls cost, from a price table the operator edits; no price is written in code.

The table is JSON (the package ships a sample, ``consortium_lab/gateway/prices.json``)::

    {
      "updated": "2025-06-01",
      "currency": "USD",
      "note": "free text",
      "models": {
        "gpt-4o-mini": {"input_per_million": 0.15, "output_per_million": 0.6},
        "demo-*":      {"input_per_million": 0, "output_per_million": 0}
      },
      "aliases": {"4o-mini": "gpt-4o-mini"}
    }

A model is found by its exact id, then through ``aliases`` (alias -> a key of ``models``),
then by the keys that contain ``*`` (glob patterns, the longest first). A model found nowhere
has an *unknown* cost (``None``), never a guessed 0. :meth:`PriceTable.load` reads the file
named by its argument, else by ``$CONSORTIUM_LAB_PRICES``, else the packaged sample.

:func:`estimate` is the pre-run "about N calls, ~$X at most" for a consortium config.
"""

from __future__ import annotations

import fnmatch
import importlib.resources
import json
import math
import os
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from consortium_lab.config.consortium import ConsortiumConfig
from consortium_lab.prompts import templates as prompts

__all__ = [
    "PRICES_ENV",
    "Estimate",
    "Price",
    "PriceTable",
    "estimate",
    "estimate_tokens",
    "format_money",
]

PRICES_ENV = "CONSORTIUM_LAB_PRICES"
"""Environment variable naming the price table to use instead of the packaged sample."""

_PACKAGE_FILE = "prices.json"
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


class Price(BaseModel):
    """The price of one model, in the table's currency per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: float = Field(ge=0, description="Price of one million input tokens.")
    output_per_million: float = Field(ge=0, description="Price of one million output tokens.")
    note: str | None = Field(None, description="Free text for the operator.")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """The cost of ``input_tokens`` in and ``output_tokens`` out."""
        if input_tokens < 0 or output_tokens < 0:
            raise ValueError(
                f"token counts must not be negative (got input={input_tokens}, "
                f"output={output_tokens})"
            )
        return (
            input_tokens * self.input_per_million + output_tokens * self.output_per_million
        ) / 1_000_000


class PriceTable(BaseModel):
    """An operator's price table; see the module docstring for the file format."""

    model_config = ConfigDict(extra="forbid")

    updated: date | None = Field(None, description="When the prices were last checked.")
    currency: str = Field("USD", description="ISO 4217 code of every price in the table.")
    note: str | None = Field(None, description="Free text for the operator.")
    models: dict[str, Price] = Field(default_factory=dict, description="Model id -> price.")
    aliases: dict[str, str] = Field(
        default_factory=dict, description="Other model id -> a key of ``models``."
    )
    _source: str = PrivateAttr("(in memory)")

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        code = value.strip().upper()
        if len(code) != 3 or not code.isalpha():
            raise ValueError(f"currency must be a three-letter ISO 4217 code (got {value!r})")
        return code

    @model_validator(mode="after")
    def _aliases(self) -> PriceTable:
        for alias, target in self.aliases.items():
            if target not in self.models:
                raise ValueError(f"aliases: {alias!r} points to {target!r}, which is not in models")
            if alias in self.models:
                raise ValueError(f"aliases: {alias!r} is also a key of models; keep one")
        return self

    @classmethod
    def load(cls, path: str | Path | None = None) -> PriceTable:
        """Read a price table: ``path``, else ``$CONSORTIUM_LAB_PRICES``, else the sample.

        Raises:
            FileNotFoundError: the named file does not exist.
            ValueError: the file is not valid JSON or not a valid table (the message names the
                file and the bad field).
        """
        if path is None:
            path = os.environ.get(PRICES_ENV) or None
        if path is None:
            source = f"consortium_lab/{_PACKAGE_FILE} (packaged sample)"
            resource = importlib.resources.files("consortium_lab.gateway").joinpath(_PACKAGE_FILE)
            text = resource.read_text(encoding="utf-8")
        else:
            file = Path(path).expanduser()
            source = str(file)
            if not file.is_file():
                raise FileNotFoundError(f"price table not found: {file}")
            text = file.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: not valid JSON: {exc}") from exc
        try:
            table = cls.model_validate(data)
        except ValueError as exc:
            raise ValueError(f"{source}: not a valid price table: {exc}") from exc
        table._source = source
        return table

    @property
    def source(self) -> str:
        """Where the table was read from."""
        return self._source

    def resolve(self, model: str) -> str | None:
        """The key of ``models`` that prices ``model``, or ``None`` when none does."""
        if model in self.models:
            return model
        if model in self.aliases:
            return self.aliases[model]
        patterns = sorted((k for k in self.models if "*" in k), key=len, reverse=True)
        return next((p for p in patterns if fnmatch.fnmatchcase(model, p)), None)

    def price(self, model: str) -> Price | None:
        """The price of ``model``, or ``None`` when the table has none."""
        key = self.resolve(model)
        return None if key is None else self.models[key]

    def cost(self, model: str, input_tokens: int | None, output_tokens: int | None) -> float | None:
        """What a call of ``model`` cost, in :attr:`currency`.

        ``None`` when the model has no price, or when a token count is ``None`` (not reported):
        an unknown cost is never turned into 0.
        """
        price = self.price(model)
        if price is None or input_tokens is None or output_tokens is None:
            return None
        return price.cost(input_tokens, output_tokens)

    def format(self, amount: float) -> str:
        """``amount`` in this table's currency: ``$0.04``, ``€1.20``, ``0.0012 CHF``."""
        return format_money(amount, self.currency)


def format_money(amount: float, currency: str = "USD") -> str:
    """A short amount of money: two decimals, or two significant digits below 0.01."""
    if amount == 0 or abs(amount) >= 0.01:
        number = f"{amount:,.2f}"
    else:
        digits = max(2, 1 - math.floor(math.log10(abs(amount))))
        number = f"{amount:.{digits}f}"
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol else f"{number} {currency}"


def estimate_tokens(text: str) -> int:
    """Tokens in ``text`` by the usual rule of thumb: four characters per token."""
    return math.ceil(len(text) / 4)


class Estimate(BaseModel):
    """The most a run of one prompt can take, before it starts.

    Counts one run of one prompt without conversation history, and no retries or fallbacks.
    """

    model_config = ConfigDict(frozen=True)

    calls: int = Field(description="Model calls if every iteration runs (max_iterations).")
    min_calls: int = Field(description="Model calls if the run stops at minimum_iterations.")
    max_input_tokens: int | None = Field(
        description="Input tokens of all calls at most; None without an output cap."
    )
    max_output_tokens: int | None = Field(
        description="Output tokens of all calls at most; None without an output cap."
    )
    max_cost: float | None = Field(
        description="Cost of all calls at most; None when a model has no price or there is "
        "no output cap."
    )
    unpriced_models: list[str] = Field(description="Models the price table has no price for.")
    currency: str
    summary: str = Field(description='E.g. "about 12 calls, ~$0.04 at most".')


def estimate(
    config: ConsortiumConfig,
    prompt: str,
    prices: PriceTable,
    *,
    max_output_tokens: int | None = None,
) -> Estimate:
    """How many calls a run of ``prompt`` makes, and what they cost at most.

    Per iteration: one call per member instance; in council mode as many again for the peer
    reviews; one arbiter (or chair) call unless the mode is compare or vote. Iterations:
    ``config.max_iterations`` (compare and vote: 1). Every call may write up to
    ``max_output_tokens`` (default ``config.limits.max_output_tokens``). A call's input is
    estimated at four characters per token from the prompt as the engine builds it from the
    real templates of :mod:`consortium_lab.prompts.templates`, with every answer, synthesis and
    earlier
    turn it quotes taken at its maximum length.
    """
    cap = config.limits.max_output_tokens if max_output_tokens is None else max_output_tokens
    if cap is not None and cap < 1:
        raise ValueError(f"max_output_tokens must be at least 1 (got {cap})")
    members = config.members()
    judged = config.has_arbiter
    iterations = config.max_iterations if judged else 1
    min_iterations = config.minimum_iterations if judged else 1
    per_iteration = len(members) * (2 if config.mode == "council" else 1) + (1 if judged else 0)
    calls = per_iteration * iterations
    min_calls = per_iteration * min_iterations
    models = sorted({m for m, _ in members} | ({config.arbiter_model} if judged else set()))
    unpriced = [m for m in models if prices.price(m) is None]

    totals: dict[str, list[int]] = {}  # model -> [input, output]
    if cap is not None:
        for model, tokens_in in _calls(config, prompt, cap, iterations):
            total = totals.setdefault(model, [0, 0])
            total[0] += tokens_in
            total[1] += cap
    max_in = sum(t[0] for t in totals.values()) if cap is not None else None
    max_out = sum(t[1] for t in totals.values()) if cap is not None else None
    max_cost: float | None = None
    if cap is not None and not unpriced:
        max_cost = 0.0
        for model, (tokens_in, tokens_out) in totals.items():
            cost = prices.cost(model, tokens_in, tokens_out)
            assert cost is not None  # every model is priced
            max_cost += cost

    about = f"about {calls} call{'' if calls == 1 else 's'}"
    if unpriced:
        summary = f"{about}; cost unknown for: {', '.join(unpriced)}"
    elif max_cost is None:
        summary = f"{about}; cost unbounded (no output-token limit)"
    else:
        summary = f"{about}, ~{prices.format(max_cost)} at most"
    return Estimate(
        calls=calls,
        min_calls=min_calls,
        max_input_tokens=max_in,
        max_output_tokens=max_out,
        max_cost=max_cost,
        unpriced_models=unpriced,
        currency=prices.currency,
        summary=summary,
    )


def _calls(
    config: ConsortiumConfig, prompt: str, cap: int, iterations: int
) -> list[tuple[str, int]]:
    """``(model, most input tokens)`` of every call of a full run, as the engine makes them."""
    tokens = estimate_tokens
    members = config.members()
    instructions = config.system_prompt
    # Answers quoted to the arbiter and reviewers: the XML around them is real, the answers
    # themselves are counted at the output cap.
    empty = [
        prompts.Candidate(id=i, model=m, answer="", confidence=1.0)
        for i, (m, _) in enumerate(members, start=1)
    ]
    quoted = len(members) * cap
    first_prompt = tokens(prompts.wrap_user_prompt(prompt))
    # From the second iteration on a member gets the previous synthesis (at most one output).
    later_prompt = tokens(prompts.iteration_prompt(prompt, "", [], instructions)) + cap
    result: list[tuple[str, int]] = []
    for iteration in range(1, iterations + 1):
        member_prompt = first_prompt if iteration == 1 else later_prompt
        # Within a run each member sees its own earlier prompts and answers as history.
        history = sum((first_prompt if j == 1 else later_prompt) + cap for j in range(1, iteration))
        for model, instance in members:
            system = tokens(
                prompts.member_system_prompt(
                    instructions, config.system_prompt_for(model, instance)
                )
            )
            result.append((model, system + history + member_prompt))
        if not config.has_arbiter:
            continue
        if config.mode == "council":
            review = tokens(prompts.rank_prompt(prompt, empty, anonymize=True)) + quoted
            result.extend((model, review) for model, _ in members)
        if config.judging_method == "rank" and config.mode == "consortium":
            judge = tokens(prompts.rank_prompt(prompt, empty)) + quoted
        else:
            earlier: Sequence[tuple[int, str]] = [(j, "") for j in range(1, iteration)]
            ranking = list(range(1, len(members) + 1)) if config.mode == "council" else []
            judge = (
                tokens(
                    prompts.arbiter_prompt(
                        prompt, empty, earlier, instructions, peer_ranking=ranking
                    )
                )
                + quoted
                + (iteration - 1) * cap
            )
        result.append((config.arbiter_model, judge))
    return result
