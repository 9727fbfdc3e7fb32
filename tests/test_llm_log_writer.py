"""Batched writes to llm's log database: one transaction per batch, nothing lost at SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import llm

from consortium_lab.gateway import llm_log_writer
from consortium_lab.gateway.llm_log_writer import LlmLogWriter

from fake_openai import ModelScript


def turns(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return int(conn.execute("select count(*) from turns").fetchone()[0])
    finally:
        conn.close()


async def finished(model_id: str, n: int) -> list[Any]:
    out = []
    for i in range(n):
        response = llm.get_async_model(model_id).prompt(f"Q{i}")
        await response.text()
        out.append(response)
    return out


async def test_a_batch_is_one_transaction(fake_openai, tmp_path, monkeypatch):
    fake_openai.add_model("m", ModelScript(reply="an answer"))
    responses = await finished("m", 12)
    calls: list[int] = []
    real = llm_log_writer.log_to_llm

    def counting(batch: Any, **kwargs: Any) -> Any:
        calls.append(len(batch))
        return real(batch, **kwargs)

    monkeypatch.setattr(llm_log_writer, "log_to_llm", counting)
    db = tmp_path / "logs.db"
    writer = LlmLogWriter(db, window=30.0)
    ids = [writer.submit(r) for r in responses]
    assert ids == [r.id for r in responses]
    assert writer.pending == 12 and not db.exists()  # nothing written before the window ends
    writer.close()
    assert calls == [12]
    assert turns(db) == 12 and writer.pending == 0


async def test_logs_off_queues_nothing(fake_openai, isolated_home):
    fake_openai.add_model("m", ModelScript(reply="an answer"))
    (isolated_home.llm_user_path / "logs-off").touch()
    writer = LlmLogWriter()
    [response] = await finished("m", 1)
    assert writer.submit(response) is None and writer.pending == 0


CHILD = textwrap.dedent(
    """
    import asyncio, time
    from consortium_lab.gateway import llm_log_writer
    llm_log_writer.BATCH_WINDOW_S = 120.0  # the queue is still waiting when SIGTERM comes
    from consortium_lab import Gateway
    from consortium_lab.gateway.core import CallRequest

    async def main():
        gateway = Gateway(cache=None)
        for i in range(3):
            out = await gateway.call(CallRequest(model="m", prompt=f"Q{i}"))
            print(out.response_id, flush=True)

    asyncio.run(main())
    print("DONE", flush=True)
    time.sleep(300)
    """
)


def test_sigterm_after_a_run_loses_no_response(fake_openai, isolated_home):
    fake_openai.add_model("m", ModelScript(reply="kept answer"))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=fake_openai.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    ids = []
    for line in child.stdout:
        if line.strip() == "DONE":
            break
        ids.append(line.strip())
    db = isolated_home.llm_user_path / "logs.db"
    assert len(ids) == 3 and (not db.exists() or turns(db) == 0)
    os.kill(child.pid, signal.SIGTERM)
    assert child.wait(timeout=60) == -signal.SIGTERM
    assert turns(db) == 3


async def test_flush_returns_only_once_a_batch_in_flight_is_written(
    fake_openai, tmp_path, monkeypatch
):
    """A caller's flush() must not return while the writer thread still writes the batch it
    took (a purge right after a run would otherwise miss rows that land a moment later)."""
    import threading

    fake_openai.add_model("m", ModelScript(reply="an answer"))
    (response,) = await finished("m", 1)
    writing, release = threading.Event(), threading.Event()
    real = llm_log_writer.log_to_llm

    def slow(batch: Any, **kwargs: Any) -> Any:
        writing.set()
        assert release.wait(60)
        return real(batch, **kwargs)

    monkeypatch.setattr(llm_log_writer, "log_to_llm", slow)
    db = tmp_path / "logs.db"
    writer = LlmLogWriter(db, window=0)
    try:
        writer.submit(response)
        assert writing.wait(60)  # the writer thread has taken the batch and is writing it
        flushed = threading.Event()
        flusher = threading.Thread(target=lambda: (writer.flush(), flushed.set()))
        flusher.start()
        assert not flushed.wait(0.5)  # still waiting on the batch in flight
        release.set()
        flusher.join(60)
        assert flushed.is_set() and turns(db) == 1
    finally:
        release.set()
        writer.close()
