"""Record a run in llm-consortium's own tables, so ``llm consortium runs`` and ``run-info``
show it.

llm-consortium 0.8.0 keeps ``consortium_runs``, ``consortium_members`` and ``arbiter_decisions``
in ``consortium_logs.db`` in its data folder (``click.get_app_dir``, see
:func:`consortium_lab.paths.upstream_db_path`); ``run-info`` joins them to that file's own
``responses`` table (``llm``'s schema). We create the tables with upstream's own DDL (without
importing llm_consortium), write the responses the rows point to, and follow the same off
switch as ``llm``'s ``logs.db``: nothing is written while ``llm logs off`` is in effect or the
gateway's ``log_to_llm`` is off. A failure to write is a warning, never the end of a run.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import sqlite_utils

from consortium_lab.compat.result import response_id_of
from consortium_lab.engine.result import RunResult
from consortium_lab.paths import upstream_db_path
from consortium_lab.sqlite import BUSY_TIMEOUT_S

__all__ = ["record_upstream_run", "run_status"]

logger = logging.getLogger(__name__)

# llm-consortium 0.8.0's schema (llm_consortium/db.py), verbatim, so its commands read our rows.
_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS consortium_runs (
        id TEXT PRIMARY KEY, created_at TEXT, config_name TEXT, strategy TEXT,
        judging_method TEXT, confidence_threshold REAL, max_iterations INTEGER,
        iteration_count INTEGER, final_confidence REAL, user_prompt TEXT, category TEXT,
        expected_agreement REAL, status TEXT,
        FOREIGN KEY (config_name) REFERENCES consortium_configs(name))""",
    """CREATE TABLE IF NOT EXISTS consortium_members (
        run_id TEXT, response_id TEXT, role TEXT, iteration INTEGER, member_index INTEGER,
        PRIMARY KEY (run_id, response_id),
        FOREIGN KEY (run_id) REFERENCES consortium_runs(id),
        FOREIGN KEY (response_id) REFERENCES responses(id))""",
    """CREATE TABLE IF NOT EXISTS arbiter_decisions (
        run_id TEXT, iteration INTEGER, response_id TEXT, chosen_response_id TEXT,
        confidence REAL, synthesis TEXT, decision_json TEXT, ranking_json TEXT,
        refinement_areas TEXT, geometric_confidence REAL, centroid_vector TEXT,
        PRIMARY KEY (run_id, iteration),
        FOREIGN KEY (run_id) REFERENCES consortium_runs(id),
        FOREIGN KEY (response_id) REFERENCES responses(id),
        FOREIGN KEY (chosen_response_id) REFERENCES responses(id))""",
    """CREATE TABLE IF NOT EXISTS consortium_configs (
        name TEXT PRIMARY KEY, config TEXT NOT NULL,
        created_at TEXT DEFAULT CURRENT_TIMESTAMP)""",
]


def run_status(upstream: dict[str, Any], result: RunResult) -> str:
    """Upstream's status words: ``success``, ``empty_synthesis`` or ``model_failure``."""
    if result.status == "failed" and not upstream["iterations"]:
        return "model_failure"
    return "success" if upstream["synthesis"].get("synthesis") else "empty_synthesis"


def record_upstream_run(
    result: RunResult,
    upstream: dict[str, Any],
    *,
    config_name: str | None,
    path: str | Path | None = None,
) -> bool:
    """Write ``result`` (and ``upstream``, its compat dict) to llm-consortium's tables.

    Returns True when written; False (with a warning logged) when the database could not be
    written. The caller applies the off switch.
    """
    try:
        conn = sqlite3.connect(str(path or upstream_db_path()), timeout=BUSY_TIMEOUT_S)
        try:
            with conn:
                _write(sqlite_utils.Database(conn), result, upstream, config_name)
        finally:
            conn.close()
    except (sqlite3.Error, OSError) as exc:
        logger.warning("could not record run %s in llm-consortium's tables: %s", result.run_id, exc)
        return False
    return True


def _write(
    db: sqlite_utils.Database, result: RunResult, upstream: dict[str, Any], name: str | None
) -> None:
    import llm.migrations  # llm's responses schema, which run-info joins to

    llm.migrations.migrate(db)
    for statement in _SCHEMA:
        db.execute(statement)
    config = upstream["metadata"]["config"]
    run_id = upstream["metadata"]["consortium_id"]
    db.table("consortium_runs").insert(
        {
            "id": run_id,
            "created_at": result.started_at,
            "config_name": name,
            "strategy": config.get("strategy") or "default",
            "judging_method": config.get("judging_method") or "default",
            "confidence_threshold": config.get("confidence_threshold"),
            "max_iterations": config.get("max_iterations"),
            "iteration_count": len(upstream["iterations"]),
            "final_confidence": float(upstream["synthesis"].get("confidence") or 0.0),
            "user_prompt": upstream["original_prompt"],
            "category": config.get("category"),
            "expected_agreement": config.get("expected_agreement"),
            "status": run_status(upstream, result),
        },
        replace=True,
    )
    responses, members, decisions = [], [], []
    for it, data in zip(result.iterations, upstream["iterations"], strict=True):
        answers = result.in_config_order(it.answers)
        for m in answers:
            if m.status != "done":
                continue
            rid = response_id_of(result.run_id, m)
            responses.append(_response(rid, m.model, m.text, result, m.usage, m.latency_ms))
            members.append(
                {
                    "run_id": run_id,
                    "response_id": rid,
                    "role": "member",
                    "iteration": it.number,
                    "member_index": m.instance - 1,
                }
            )
        s = it.synthesis
        if s is None:
            continue
        rid = response_id_of(result.run_id, s)
        responses.append(_response(rid, s.model, s.raw, result, s.usage, s.latency_ms))
        members.append(
            {
                "run_id": run_id,
                "response_id": rid,
                "role": "arbiter",
                "iteration": it.number,
                "member_index": 0,
            }
        )
        parsed = data["synthesis"]
        rank = config.get("judging_method") == "rank"
        decisions.append(
            {
                "run_id": run_id,
                "iteration": it.number,
                "response_id": rid,
                "chosen_response_id": parsed.get("chosen_response_id"),
                "confidence": parsed.get("confidence", 0.0),
                "synthesis": parsed.get("synthesis", ""),
                "decision_json": None if rank else json.dumps(parsed),
                "ranking_json": json.dumps(parsed.get("ranking", [])) if rank else None,
                "refinement_areas": json.dumps(parsed.get("refinement_areas", [])),
                "geometric_confidence": parsed.get("geometric_confidence"),
                "centroid_vector": None
                if parsed.get("centroid_vector") is None
                else json.dumps(parsed["centroid_vector"]),
            }
        )
    db.table("responses").insert_all(responses, pk="id", ignore=True, alter=True)
    db.table("consortium_members").insert_all(members, ignore=True)
    db.table("arbiter_decisions").insert_all(decisions, replace=True)


def _response(
    rid: str, model: str, text: str, result: RunResult, usage: Any, latency_ms: float | None
) -> dict[str, Any]:
    return {
        "id": rid,
        "model": model,
        "prompt": result.prompt,
        "response": text,
        "datetime_utc": result.started_at,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "duration_ms": int(latency_ms) if latency_ms is not None else None,
    }
