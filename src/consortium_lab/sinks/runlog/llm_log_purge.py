"""Deleting responses from llm's ``logs.db`` by id, in both of its layouts.

llm up to 0.2x keeps one ``responses`` row per response (tables beside it name it by
``response_id``). llm 0.36 keeps a ``turns`` row per response (tables beside it name it by
``turn_id``) and the text in content-addressed ``messages`` and their ``parts``, shared between
turns and chained by ``parent_hash``; a message goes only when nothing points at it any more.
Each layout also has a full-text index, merged after deleting so no deleted term lingers in an
old segment. The caller commits and vacuums.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

__all__ = ["chunks", "count_responses", "delete_responses", "merge_fts", "sql_in"]

_CHUNK = 500  # SQLite's bound-parameter limit is 999 on old builds
_FTS = ("responses_fts", "turn_search_fts")


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _with_column(conn: sqlite3.Connection, tables: Iterable[str], column: str) -> list[str]:
    return sorted(
        t
        for t in tables
        if not t.endswith(("_fts", "_data", "_idx", "_docsize", "_config"))
        and any(col[1] == column for col in conn.execute(f"PRAGMA table_info([{t}])"))
    )


def chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    """``items`` in slices small enough to bind as SQL parameters."""
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def sql_in(items: Sequence[object]) -> str:
    """``IN (?,?,...)`` for ``items``."""
    return f"IN ({','.join('?' * len(items))})"


def _primary(tables: set[str]) -> list[tuple[str, str]]:
    """(table, column naming it elsewhere) for each layout this file has."""
    return [(t, c) for t, c in (("responses", "response_id"), ("turns", "turn_id")) if t in tables]


def count_responses(conn: sqlite3.Connection, ids: Sequence[str]) -> int:
    """How many of ``ids`` the log holds (in either layout)."""
    total = 0
    for table, _ in _primary(_tables(conn)):
        for chunk in chunks(ids):
            total += conn.execute(
                f"SELECT count(*) FROM {table} WHERE id {sql_in(chunk)}", chunk
            ).fetchone()[0]
    return int(total)


def delete_responses(conn: sqlite3.Connection, ids: Sequence[str]) -> None:
    """Delete ``ids`` and every row only they used, inside the caller's transaction."""
    tables = _tables(conn)
    for table, column in _primary(tables):
        linked = _with_column(conn, tables - {table}, column)
        for chunk in chunks(ids):
            if table == "responses":
                _delete_legacy(conn, chunk, linked)
            else:
                _delete_turns(conn, chunk, linked, tables)


def _delete_legacy(conn: sqlite3.Connection, chunk: Sequence[str], linked: list[str]) -> None:
    conversations = [
        row[0]
        for row in conn.execute(
            f"SELECT DISTINCT conversation_id FROM responses WHERE id {sql_in(chunk)}"
            " AND conversation_id IS NOT NULL",
            chunk,
        )
    ]
    for table in linked:
        conn.execute(f"DELETE FROM [{table}] WHERE response_id {sql_in(chunk)}", chunk)
    conn.execute(f"DELETE FROM responses WHERE id {sql_in(chunk)}", chunk)
    # llm names a conversation after its first prompt: an emptied one goes too.
    for conversation in conversations:
        conn.execute(
            "DELETE FROM conversations WHERE id = ?"
            " AND NOT EXISTS (SELECT 1 FROM responses WHERE conversation_id = ?)",
            [conversation, conversation],
        )


def _delete_turns(
    conn: sqlite3.Connection, chunk: Sequence[str], linked: list[str], tables: set[str]
) -> None:
    rows = conn.execute(
        "SELECT thread_id, parent_message_hash, tip_message_hash FROM turns"
        f" WHERE id {sql_in(chunk)}",
        chunk,
    ).fetchall()
    threads = {r[0] for r in rows if r[0]}
    messages = {h for r in rows for h in r[1:] if h}
    for table in linked:
        conn.execute(f"DELETE FROM [{table}] WHERE turn_id {sql_in(chunk)}", chunk)
    conn.execute(f"DELETE FROM turns WHERE id {sql_in(chunk)}", chunk)
    if "threads" in tables:
        for thread in sorted(threads):
            gone = conn.execute(
                "DELETE FROM threads WHERE id = ?"
                " AND NOT EXISTS (SELECT 1 FROM turns WHERE thread_id = ?)"
                " AND NOT EXISTS (SELECT 1 FROM threads WHERE forked_from = ?)"
                " RETURNING tip_message_hash",
                [thread, thread, thread],
            ).fetchall()
            messages.update(r[0] for r in gone if r[0])
    if "messages" in tables:
        _delete_unused_messages(conn, messages, tables)


def _delete_unused_messages(conn: sqlite3.Connection, hashes: set[str], tables: set[str]) -> None:
    """Delete each message of ``hashes`` nothing points at, then its parent likewise."""
    part_links = _with_column(conn, tables - {"parts"}, "part_id")
    pending = sorted(hashes)
    while pending:
        message = pending.pop()
        used = conn.execute(
            "SELECT 1 FROM turns WHERE parent_message_hash = ?1 OR tip_message_hash = ?1"
            " UNION ALL SELECT 1 FROM threads WHERE tip_message_hash = ?1"
            " UNION ALL SELECT 1 FROM messages WHERE parent_hash = ?1 LIMIT 1",
            [message],
        ).fetchone()
        if used:
            continue
        parent = conn.execute("SELECT parent_hash FROM messages WHERE hash = ?", [message])
        row = parent.fetchone()
        if row is None:
            continue
        if "parts" in tables:
            parts = [
                r[0] for r in conn.execute("SELECT id FROM parts WHERE message_hash = ?", [message])
            ]
            for table in part_links:
                for chunk in chunks(parts):
                    conn.execute(f"DELETE FROM [{table}] WHERE part_id {sql_in(chunk)}", chunk)
            conn.execute("DELETE FROM parts WHERE message_hash = ?", [message])
        conn.execute("DELETE FROM messages WHERE hash = ?", [message])
        if row[0]:
            pending.append(row[0])


def merge_fts(conn: sqlite3.Connection) -> None:
    """Merge llm's full-text indexes: FTS5 deletes only append tombstones, and merging is what
    drops the deleted terms from the file."""
    tables = _tables(conn)
    for fts in _FTS:
        if fts in tables:
            conn.execute(f"INSERT INTO {fts}({fts}) VALUES ('optimize')")
