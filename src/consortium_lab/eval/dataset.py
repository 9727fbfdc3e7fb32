"""An evaluation's items, read from JSONL, CSV, a pandas DataFrame or a list of dicts.

Every item has ``id``, ``prompt`` and ``answer`` (the reference), and optionally ``choices``
(a list, or in CSV a JSON list or ``|``-separated text) and ``metadata`` (a dict, or JSON text).
A bad row (unreadable line, missing or empty field, duplicate id, wrong type) is reported with
its line number (CSV: the file line, counting the header as 1; JSONL: the file line; Python:
the 1-based position). :func:`load_dataset` refuses the whole dataset while any row is bad,
unless ``skip_bad=True``, which drops those rows and says how many in :attr:`Dataset.skipped`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BadRow", "Dataset", "DatasetError", "Item", "load_dataset"]

REQUIRED = ("id", "prompt", "answer")


@dataclass(frozen=True)
class Item:
    """One question with its reference answer."""

    id: str
    prompt: str
    answer: str
    choices: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be used: where it is and what is wrong with it."""

    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


class DatasetError(ValueError):
    """The dataset has bad rows (listed in :attr:`bad`) or cannot be read at all."""

    def __init__(self, source: str, bad: list[BadRow], message: str | None = None) -> None:
        self.source = source
        self.bad = bad
        lines = "\n".join(f"  {row}" for row in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        super().__init__(
            message
            or f"{source}: {len(bad)} bad row(s); fix them or skip them (skip_bad / --skip-bad):"
            f"\n{lines}{more}"
        )


@dataclass(frozen=True)
class Dataset:
    """The usable items, where they came from, and the bad rows that were skipped."""

    items: tuple[Item, ...]
    source: str
    skipped: tuple[BadRow, ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    def limit(self, n: int | None) -> Dataset:
        """The first ``n`` items (all of them when ``n`` is None)."""
        if n is None:
            return self
        if n < 1:
            raise ValueError(f"limit: expected a positive number of items (got {n})")
        return Dataset(self.items[:n], self.source, self.skipped)


def _choices(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)  # ValueError is reported as a bad row
        else:
            return tuple(part.strip() for part in text.split("|") if part.strip())
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(c, (str, int, float)) for c in value
    ):
        raise TypeError("choices: expected a list of texts")
    return tuple(str(c) for c in value)


def _metadata(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, Mapping):
        raise TypeError("metadata: expected an object")
    return dict(value)


def _item(row: Any, line: int) -> Item:
    """One row as an :class:`Item`; ValueError/TypeError name what is wrong."""
    if not isinstance(row, Mapping):
        raise TypeError(f"expected an object with {', '.join(REQUIRED)}, got {type(row).__name__}")
    missing = [
        name for name in REQUIRED if row.get(name) is None or str(row.get(name)).strip() == ""
    ]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    for name in REQUIRED:
        if not isinstance(row[name], (str, int, float)) or isinstance(row[name], bool):
            raise TypeError(f"{name}: expected text or a number, got {type(row[name]).__name__}")
    try:
        choices = _choices(row.get("choices"))
        metadata = _metadata(row.get("metadata"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"choices/metadata: not valid JSON ({exc.msg})") from exc
    return Item(
        id=str(row["id"]).strip(),
        prompt=str(row["prompt"]),
        answer=str(row["answer"]),
        choices=choices,
        metadata=metadata,
        line=line,
    )


def _collect(rows: Iterable[tuple[int, Any]], source: str, skip_bad: bool) -> Dataset:
    items: list[Item] = []
    bad: list[BadRow] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, BadRow):
            bad.append(row)
            continue
        try:
            item = _item(row, line)
        except (TypeError, ValueError) as exc:
            bad.append(BadRow(line, str(exc)))
            continue
        if item.id in seen:
            bad.append(BadRow(line, f"duplicate id {item.id!r} (first on line {seen[item.id]})"))
            continue
        seen[item.id] = line
        items.append(item)
    if bad and not skip_bad:
        raise DatasetError(source, bad)
    if not items:
        raise DatasetError(source, bad, f"{source}: no usable items")
    return Dataset(tuple(items), source, tuple(bad))


def _jsonl_rows(path: Path) -> Iterable[tuple[int, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, BadRow(number, f"unreadable line: {exc.msg} (column {exc.colno})")


def _csv_rows(path: Path) -> Iterable[tuple[int, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        absent = [name for name in REQUIRED if name not in (reader.fieldnames or [])]
        if absent:
            raise DatasetError(
                str(path), [], f"{path}: the header lacks column(s) {', '.join(absent)}"
            )
        for row in reader:
            line = reader.line_num
            if None in row or any(value is None for value in row.values()):
                yield (
                    line,
                    BadRow(
                        line, f"unreadable line: expected {len(reader.fieldnames or [])} columns"
                    ),
                )
                continue
            yield line, row


def load_dataset(source: Any, *, skip_bad: bool = False) -> Dataset:
    """Read a dataset from a ``.jsonl``/``.csv`` path, a pandas DataFrame or a list of dicts.

    Raises :class:`DatasetError` listing every bad row with its line number unless
    ``skip_bad``, and when no usable item is left.
    """
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DatasetError(str(path), [], f"{path}: no such file")
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            return _collect(_jsonl_rows(path), str(path), skip_bad)
        if suffix == ".csv":
            return _collect(_csv_rows(path), str(path), skip_bad)
        raise DatasetError(str(path), [], f"{path}: expected a .jsonl or .csv file")
    if hasattr(source, "to_dict") and hasattr(source, "columns"):
        records = source.to_dict(orient="records")
        rows = [{k: (None if _is_nan(v) else v) for k, v in r.items()} for r in records]
        return _collect(enumerate(rows, 1), "DataFrame", skip_bad)
    if isinstance(source, (list, tuple)):
        return _collect(enumerate(source, 1), "list", skip_bad)
    raise TypeError(
        f"dataset: expected a .jsonl/.csv path, a DataFrame or a list of dicts, "
        f"got {type(source).__name__}"
    )


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value
