"""The user's own retention: fewer days than the operator's maximum, chosen in the chat.

Kept as ``retention.json`` (``{"days": N}``) in the user's data folder, beside the run log, so
the chat server's purge and root's ``purge --all-homes`` read the same choice.
:func:`~consortium_lab.sinks.runlog.effective_retention_days` takes the smaller of it and
``CONSORTIUM_LAB_RETENTION_DAYS``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from consortium_lab.sinks.runlog.purge import parse_days

__all__ = ["CHOICE_FILE", "chosen_retention_days", "set_retention_days"]

CHOICE_FILE = "retention.json"


def _path(folder: Path | None) -> Path:
    from consortium_lab.paths import data_dir

    return (folder if folder is not None else data_dir()) / CHOICE_FILE


def chosen_retention_days(folder: Path | None = None) -> int | None:
    """The days the user chose (``None``: no choice) in ``folder`` (default: the data folder).
    A file that is not a valid choice raises ``ValueError`` naming it."""
    path = _path(folder)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        days = data["days"]
    except (ValueError, TypeError, KeyError):
        raise ValueError(f'{path}: expected {{"days": N}}') from None
    return None if days is None else parse_days(days, what=str(path))


def set_retention_days(days: int | None, folder: Path | None = None) -> int | None:
    """Store the user's choice (``None`` removes it); returns it. Bad days raise
    ``ValueError`` and store nothing."""
    path = _path(folder)
    if days is None:
        path.unlink(missing_ok=True)
        return None
    if isinstance(days, bool):  # int(True) would be a day
        raise ValueError(f"days must be a whole number of days, got {days!r}")
    value = parse_days(days, what="days")
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps({"days": value}), encoding="utf-8")
    os.replace(temp, path)  # never a half-written choice
    return value
