"""Saved consortium configurations, shared with ``llm consortium list/save/remove``.

They live in llm-consortium's own ``consortium_configs`` table (``name`` primary key, ``config``
JSON, ``created_at``) in its database file (see :func:`consortium_lab.paths.upstream_db_path`),
so a config saved here shows in ``llm consortium list`` and runs as ``llm -m NAME`` (through
upstream's own synchronous orchestrator, which ignores our extra keys), and one saved with
``llm consortium save`` shows in :func:`list`.

A stored row that our validator rejects is listed with ``ok=False`` and its error; listing never
raises.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils
from pydantic import ValidationError

from consortium_lab.config.consortium import ConsortiumConfig
from consortium_lab.paths import upstream_db_path

TABLE = "consortium_configs"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class SavedConfig:
    """One row of the saved-config store."""

    name: str
    created_at: str | None
    raw: dict[str, Any] | str
    config: ConsortiumConfig | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the stored config passes our validation."""
        return self.config is not None


@contextlib.contextmanager
def _db(path: str | Path | None) -> Iterator[sqlite_utils.Database]:
    conn = sqlite3.connect(str(path or upstream_db_path()), timeout=30)
    try:
        db = sqlite_utils.Database(conn)
        # Same DDL as llm-consortium, so whichever tool runs first creates the identical table.
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, config TEXT NOT NULL,"
            " created_at TEXT DEFAULT CURRENT_TIMESTAMP)"
        )
        yield db
    finally:
        conn.close()


def check_name(name: str) -> str:
    """A config name is also an ``llm`` model id: letters, digits, ``.``, ``_`` and ``-``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"name: {name!r} is not a valid config name (letters, digits, '.', '_', '-';"
            " starting with a letter or digit; at most 100 characters)"
        )
    return name


def _row(row: dict[str, Any]) -> SavedConfig:
    raw_text = row.get("config") or ""
    try:
        raw: dict[str, Any] | str = json.loads(raw_text)
    except (TypeError, json.JSONDecodeError) as exc:
        return SavedConfig(
            row["name"], row.get("created_at"), raw_text, None, f"invalid JSON: {exc}"
        )
    try:
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
        config = ConsortiumConfig.from_dict(raw)
    except (ValidationError, ValueError) as exc:
        return SavedConfig(row["name"], row.get("created_at"), raw, None, str(exc))
    return SavedConfig(row["name"], row.get("created_at"), raw, config)


def save(
    name: str, config: ConsortiumConfig | dict[str, Any], *, path: str | Path | None = None
) -> SavedConfig:
    """Save (or replace) a config under ``name``."""
    check_name(name)
    if not isinstance(config, ConsortiumConfig):
        config = ConsortiumConfig.from_dict(config)
    if config.arbiter is None:
        # Same meaning (the first member judges), but llm-consortium skips a saved config
        # without an explicit arbiter instead of registering it as `llm -m NAME`.
        config = config.model_copy(update={"arbiter": config.arbiter_model})
    with _db(path) as db, db.conn:
        db.table(TABLE).insert(
            {
                "name": name,
                "config": json.dumps(config.to_dict()),
                "created_at": datetime.now(UTC).isoformat(),
            },
            pk="name",
            replace=True,
        )
    return get_saved(name, path=path)


def list(*, path: str | Path | None = None) -> builtins.list[SavedConfig]:
    """Every saved config, sorted by name; invalid rows are included with ``ok=False``."""
    with _db(path) as db:
        return [_row(r) for r in db.query(f"SELECT * FROM {TABLE} ORDER BY name")]


def get_saved(name: str, *, path: str | Path | None = None) -> SavedConfig:
    """The stored row for ``name`` (valid or not); ``KeyError`` if there is none."""
    with _db(path) as db:
        rows = builtins.list(db.query(f"SELECT * FROM {TABLE} WHERE name = ?", [name]))
    if not rows:
        raise KeyError(f"no saved config named {name!r}")
    return _row(rows[0])


def get(name: str, *, path: str | Path | None = None) -> ConsortiumConfig:
    """The config saved as ``name``. ``KeyError`` if missing, ``ValueError`` if it is invalid."""
    saved = get_saved(name, path=path)
    if saved.config is None:
        raise ValueError(f"saved config {name!r} is invalid: {saved.error}")
    return saved.config


def remove(name: str, *, path: str | Path | None = None) -> None:
    """Delete the config saved as ``name``; ``KeyError`` if there is none."""
    with _db(path) as db, db.conn:
        cursor = db.execute(f"DELETE FROM {TABLE} WHERE name = ?", [name])
    if cursor.rowcount == 0:
        raise KeyError(f"no saved config named {name!r}")


def clone(source: str, target: str, *, path: str | Path | None = None) -> SavedConfig:
    """Copy the config ``source`` to a new name ``target`` (which must not exist yet)."""
    config = get(source, path=path)
    try:
        get_saved(target, path=path)
    except KeyError:
        return save(target, config, path=path)
    raise ValueError(f"target: a config named {target!r} already exists")


def export(names: builtins.list[str] | None = None, *, path: str | Path | None = None) -> str:
    """JSON text ``{"configs": {name: config}}`` of the named configs (all valid ones if None)."""
    if names is None:
        chosen = [s for s in list(path=path) if s.ok]
    else:
        chosen = [get_saved(n, path=path) for n in names]
    return json.dumps({"configs": {s.name: s.raw for s in chosen}}, indent=2, ensure_ascii=False)


def import_json(
    text: str, *, replace: bool = False, path: str | Path | None = None
) -> builtins.list[str]:
    """Save every config in an :func:`export` document (or a single ``{"name", "config"}``).

    Everything is validated before anything is written; existing names are an error unless
    ``replace`` is true. Returns the names saved.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"import: not valid JSON ({exc})") from exc
    if isinstance(data, dict) and "configs" in data and isinstance(data["configs"], dict):
        items = data["configs"]
    elif isinstance(data, dict) and "name" in data and "config" in data:
        items = {data["name"]: data["config"]}
    else:
        raise ValueError(
            'import: expected {"configs": {name: config}} or {"name": ..., "config": ...}'
        )
    parsed = {}
    for name, raw in items.items():
        check_name(name)
        try:
            parsed[name] = ConsortiumConfig.from_dict(raw)
        except ValidationError as exc:
            raise ValueError(f"import: config {name!r} is invalid: {exc}") from exc
        if not replace:
            try:
                get_saved(name, path=path)
            except KeyError:
                continue
            raise ValueError(f"import: a config named {name!r} already exists (use replace)")
    for name, config in parsed.items():
        save(name, config, path=path)
    return builtins.list(parsed)
