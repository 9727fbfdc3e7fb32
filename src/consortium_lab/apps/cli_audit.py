"""``consortium-lab audit``: check the gateway's audit log (``verify``).

The log is the ledger's hash chain (see :mod:`consortium_lab.gateway.ledger.audit`). A SQLite
ledger is opened read-only, so checking it never changes it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from consortium_lab.gateway.ledger import AuditEntry

__all__ = ["audit_cmd"]


@click.group("audit")
def audit_cmd() -> None:
    """The gateway's audit log: append-only and hash-chained."""


@audit_cmd.command("verify")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The gateway's settings file: its ledger (or redis) is checked.",
)
@click.option(
    "--ledger",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A SQLite ledger file (default <data folder>/gateway/ledger.db).",
)
@click.option("--redis", help="A redis:// or rediss:// URL of a shared ledger.")
def verify_cmd(config_file: Path | None, ledger: Path | None, redis: str | None) -> None:
    """Check every entry's hash and link; name the first broken entry (exit 1)."""
    from consortium_lab.gateway.ledger import AuditBroken, verify

    entries: list[AuditEntry]
    if ledger is None and redis is None:
        try:
            from consortium_lab.service.settings import ServiceSettings
        except ImportError as exc:  # pragma: no cover - the gateway extra is missing
            raise click.ClickException(f"pass --ledger or --redis ({exc})") from None
        try:
            settings = ServiceSettings.load(config_file)
        except (ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        redis = settings.redis
        ledger = None if redis else settings.ledger_path()
    if redis:
        entries, where = _redis_entries(redis)
    else:
        assert ledger is not None
        entries, where = _sqlite_entries(ledger), str(ledger)
    try:
        count = verify(entries)
    except AuditBroken as exc:
        raise click.ClickException(f"{where}: {exc}") from None
    last = f", last hash {entries[-1].hash[:16]}" if entries else ""
    click.echo(f"{where}: the audit log holds: {count} entries{last}")


def _sqlite_entries(path: Path) -> list[AuditEntry]:
    from consortium_lab.gateway.ledger import AuditEntry

    path = path.expanduser()
    if not path.is_file():
        raise click.ClickException(f"{path}: no such ledger file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT seq, entry FROM gateway_audit ORDER BY seq").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"{path}: not a gateway ledger ({exc})") from None
    entries = []
    for seq, text in rows:
        try:
            entries.append(AuditEntry.from_json(text))
        except (ValueError, TypeError):
            raise click.ClickException(
                f"{path}: the audit log is broken at entry {seq}: not a readable entry"
            ) from None
    return entries


def _redis_entries(url: str) -> tuple[list[AuditEntry], str]:
    from consortium_lab.gateway.ledger import RedisLedger, mask_url

    where = mask_url(url)
    store = RedisLedger(url)
    try:
        store.connect_check()
        return store.audit_entries(), where
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
