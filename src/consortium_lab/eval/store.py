"""Evaluations in the run log: :class:`EvalStore`, a :class:`RunStore` that also keeps the
tables of migration 5 (``evaluations``, ``eval_items``, ``eval_results``).

The evaluation's runs are ordinary runs in the same file, written by the engine; each result
row names its ``run_id``, and the evaluation's ``tag`` groups them
(``consortium-lab runs list --tag TAG``). A result row is committed as soon as its item is
scored, so a killed evaluation keeps every scored item, and resuming skips exactly those
(:meth:`EvalStore.done`).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

import sqlite_utils

from consortium_lab.eval.dataset import Item
from consortium_lab.eval.report import EvalReport, ItemResult
from consortium_lab.eval.stats import DEFAULT_SEED, summarise
from consortium_lab.sinks.runlog.connection import decode, encode, utc_now
from consortium_lab.sinks.runlog.store import RunStore

__all__ = ["EvalStore"]

_JSON = ("conditions", "settings", "notes")


def _alive(host: str | None, pid: int | None) -> bool:
    """Whether the process that owns an evaluation still runs; one on another host, or with
    no owner recorded, cannot be checked from here and counts as alive."""
    if pid is None or host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


class EvalStore(RunStore):
    """The run log, with the evaluation tables' reads and writes."""

    def create(
        self,
        *,
        dataset: str,
        items: Sequence[Item],
        scorer: str,
        samples: int,
        conditions: Sequence[str],
        settings: dict[str, Any],
        skipped: int = 0,
        notes: Sequence[str] = (),
    ) -> str:
        """Record a new evaluation and its items; returns its id (its tag is ``eval-<id>``)."""
        eval_id = uuid.uuid4().hex[:12]

        def write(db: sqlite_utils.Database) -> None:
            db.execute(
                "INSERT INTO evaluations (id, tag, created_at, dataset, scorer, samples,"
                " conditions, settings, skipped, notes, owner_host, owner_pid)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    eval_id,
                    f"eval-{eval_id}",
                    utc_now(),
                    dataset,
                    scorer,
                    samples,
                    encode(list(conditions)),
                    encode(settings),
                    skipped,
                    encode(list(notes)),
                    socket.gethostname(),
                    os.getpid(),
                ],
            )
            db.conn.executemany(
                "INSERT INTO eval_items (evaluation_id, position, item_id, prompt, answer,"
                " choices, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        eval_id,
                        i,
                        it.id,
                        it.prompt,
                        it.answer,
                        encode(list(it.choices)),
                        encode(it.metadata),
                    )
                    for i, it in enumerate(items)
                ],
            )

        self._write(write, what="create evaluation")
        return eval_id

    def claim(self, eval_id: str) -> None:
        """Make this process the evaluation's owner again (resuming) and mark it running."""
        self._write(
            lambda db: db.execute(
                "UPDATE evaluations SET owner_host = ?, owner_pid = ?, status = 'running',"
                " finished_at = NULL WHERE id = ?",
                [socket.gethostname(), os.getpid(), eval_id],
            ),
            what="claim evaluation",
        )

    def evaluation(self, eval_id: str) -> dict[str, Any]:
        """The evaluation's row (JSON decoded; ``status`` reads ``interrupted`` when its
        process died while running). KeyError for an unknown id."""
        rows = self._read("SELECT * FROM evaluations WHERE id = ? OR tag = ?", [eval_id, eval_id])
        if not rows:
            raise KeyError(
                f"no evaluation {eval_id!r} in the run log (see `consortium-lab eval list`)"
            )
        return self._status(decode(rows[0], _JSON))

    def _status(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["status"] == "running" and not _alive(row["owner_host"], row["owner_pid"]):
            row["status"] = "interrupted"
        return row

    def list_evaluations(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Every evaluation, newest first, with ``items`` and ``answered`` counts."""
        sql = (
            "SELECT e.*, (SELECT count(*) FROM eval_items i WHERE i.evaluation_id = e.id)"
            " AS items, (SELECT count(*) FROM eval_results r WHERE r.evaluation_id = e.id)"
            " AS answered FROM evaluations e ORDER BY created_at DESC, rowid DESC"
        )
        params: list[Any] = []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [self._status(decode(row, _JSON)) for row in self._read(sql, params)]

    def items(self, eval_id: str) -> list[Item]:
        """The evaluation's items in dataset order."""
        rows = self._read(
            "SELECT * FROM eval_items WHERE evaluation_id = ? ORDER BY position", [eval_id]
        )
        return [
            Item(
                id=r["item_id"],
                prompt=r["prompt"],
                answer=r["answer"],
                choices=tuple(json.loads(r["choices"])),
                metadata=json.loads(r["metadata"]),
                line=r["position"] + 1,
            )
            for r in rows
        ]

    def done(self, eval_id: str) -> set[tuple[str, str, int]]:
        """``(item_id, condition, sample)`` of every scored answer: what a resume skips."""
        rows = self._read(
            "SELECT item_id, condition, sample FROM eval_results WHERE evaluation_id = ?",
            [eval_id],
        )
        return {(r["item_id"], r["condition"], r["sample"]) for r in rows}

    def add_result(self, eval_id: str, result: ItemResult) -> None:
        """Commit one scored answer (one transaction, so a crash keeps it)."""
        row = result.model_dump()
        self._write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO eval_results (evaluation_id, item_id, condition,"
                " sample, run_id, answer, extracted, correct, latency_s, tokens, cost, error,"
                " verdict, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    eval_id,
                    row["item_id"],
                    row["condition"],
                    row["sample"],
                    row["run_id"],
                    row["answer"],
                    row["extracted"],
                    int(row["correct"]),
                    row["latency_s"],
                    row["tokens"],
                    row["cost"],
                    row["error"],
                    row["verdict"],
                    utc_now(),
                ],
            ),
            what="record evaluation result",
        )

    def finish(self, eval_id: str, status: str, notes: Sequence[str] | None = None) -> None:
        """Mark the evaluation ``completed``, ``failed`` or ``interrupted`` (and replace its
        notes)."""

        def write(db: sqlite_utils.Database) -> None:
            db.execute(
                "UPDATE evaluations SET status = ?, finished_at = ? WHERE id = ?",
                [status, utc_now(), eval_id],
            )
            if notes is not None:
                db.execute(
                    "UPDATE evaluations SET notes = ? WHERE id = ?", [encode(list(notes)), eval_id]
                )

        self._write(write, what="finish evaluation")

    def results(self, eval_id: str) -> list[ItemResult]:
        """Every scored answer, in item, condition and sample order."""
        rows = self._read(
            "SELECT r.* FROM eval_results r JOIN eval_items i"
            " ON i.evaluation_id = r.evaluation_id AND i.item_id = r.item_id"
            " WHERE r.evaluation_id = ? ORDER BY i.position, r.condition, r.sample",
            [eval_id],
        )
        return [ItemResult.model_validate({**r, "correct": bool(r["correct"])}) for r in rows]

    def report(self, eval_id: str, *, seed: int | None = DEFAULT_SEED) -> EvalReport:
        """The evaluation as an :class:`EvalReport`, its totals computed from what is stored
        (conditions in the order they were asked)."""
        row = self.evaluation(eval_id)
        results = self.results(row["id"])
        conditions = [
            summarise(name, [r for r in results if r.condition == name], seed=seed)
            for name in row["conditions"]
        ]
        return EvalReport(
            id=row["id"],
            tag=row["tag"],
            dataset=row["dataset"],
            scorer=row["scorer"],
            samples=row["samples"],
            status=row["status"],
            created_at=row["created_at"],
            settings=row["settings"],
            skipped=row["skipped"],
            notes=row["notes"],
            conditions=conditions,
            items=results,
        )

    def __enter__(self) -> EvalStore:
        return self
