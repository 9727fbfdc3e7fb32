"""Purging a large run log (issue #9): seconds, and the file's size before and after.

Records one synthetic run (``tests/_store_writer.py``: 3 members and a failing one, 2
iterations) through ``RunStore``, copies its rows in SQL until the log holds ``--runs`` runs
(default 100,000), makes ``--old`` of them (default all) older than 30 days, then times
``runs.purge(30)`` (secure_delete, WAL truncate, VACUUM). llm's log is left out (``llm_log=False``):
this measures the run log.

Run: ``.venv/bin/python benchmarks/bench_purge.py [--runs N] [--old N]``.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from consortium_lab import runs  # noqa: E402
from consortium_lab.sinks.runlog import RunStore  # noqa: E402

from _store_writer import build_run_events  # noqa: E402

TABLES = ("member_responses", "arbiter_decisions", "events")


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})") if row[1] != "id"]


def fill(path: Path, total: int, old: int) -> None:
    """``total`` copies of one recorded run, the first ``old`` started 40 days ago."""
    with RunStore(path) as store:
        store.record_many(build_run_events("seed", iterations=2))
    conn = sqlite3.connect(path)
    run_cols = [
        c for c in columns(conn, "runs") if c not in ("id", "conversation_id", "started_at")
    ]
    long_ago = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    now = datetime.now(UTC).isoformat()
    with conn:
        for i in range(1, total):
            run_id = f"run{i:07d}"
            started = long_ago if i < old else now
            conn.execute(
                f"INSERT INTO runs (id, conversation_id, started_at, {', '.join(run_cols)})"
                f" SELECT ?, ?, ?, {', '.join(run_cols)} FROM runs WHERE id = 'seed'",
                [run_id, run_id, started],
            )
            conn.execute(
                "INSERT INTO conversations (id, created_at, title, config)"
                " SELECT ?, created_at, title, config FROM conversations WHERE id = 'seed'",
                [run_id],
            )
            for table in TABLES:
                cols = [c for c in columns(conn, table) if c != "run_id"]
                conn.execute(
                    f"INSERT INTO {table} (run_id, {', '.join(cols)})"
                    f" SELECT ?, {', '.join(cols)} FROM {table} WHERE run_id = 'seed'",
                    [run_id],
                )
        if old >= total:
            conn.execute("UPDATE runs SET started_at = ? WHERE id = 'seed'", [long_ago])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--old", type=int, help="how many are old (default: all)")
    args = parser.parse_args()
    old = args.runs if args.old is None else args.old
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "runs.db"
        started = time.perf_counter()
        fill(path, args.runs, old)
        print(f"filled {args.runs} runs in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        report = runs.purge(30, path=path, llm_log=False)
        seconds = time.perf_counter() - started
        print(
            f"purged {report.runs} runs ({report.conversations} conversations) in {seconds:.1f} s;"
            f" file {report.bytes_before / 1e6:.1f} MB -> {report.bytes_after / 1e6:.2f} MB"
        )


if __name__ == "__main__":
    main()
