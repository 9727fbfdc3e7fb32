"""The writer thread that the ledger and the quota manager share (``gateway.flusher``)."""

from __future__ import annotations

import gc
import logging
import threading
import time

import pytest

from consortium_lab.gateway.flusher import Flusher


class Owner:
    """A queue written in batches, as the ledger and the quota manager keep one."""

    def __init__(self, *, fail: int = 0, delay: float = 0.0) -> None:
        self.lock = threading.Lock()
        self.queue: list[int] = []
        self.batches: list[list[int]] = []
        self.fail = fail
        self.flusher = Flusher(
            self,
            lock=self.lock,
            name="test-writer",
            what="numbers",
            lost=lambda o: o.queue,
            delay=delay,
        )

    def add(self, item: int) -> bool:
        with self.lock:
            self.queue.append(item)
        return self.flusher.wake()

    def flush(self) -> None:
        with self.lock:
            batch, self.queue = self.queue, []
        if not batch:
            return
        if self.fail:
            self.fail -= 1
            with self.lock:
                self.queue[:0] = batch
            raise OSError("disk full")
        self.batches.append(batch)


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_thread_writes_what_queued_up_in_batches() -> None:
    owner = Owner(delay=0.05)
    assert all(owner.add(i) for i in range(50))
    wait_for(lambda: sum(len(b) for b in owner.batches) == 50)
    assert [i for b in owner.batches for i in b] == list(range(50))
    assert len(owner.batches) < 50  # the delay gathered several into one batch
    owner.flusher.close()


def test_close_writes_the_rest_and_later_writes_are_the_owners() -> None:
    owner = Owner(delay=0.2)
    owner.add(1)
    owner.flusher.close()  # the thread's batch or close()'s own write: either way, written
    assert owner.batches == [[1]]
    assert owner.flusher.closed
    assert owner.add(2) is False  # the caller writes it itself now
    assert owner.queue == [2]


def test_a_failed_batch_is_tried_again() -> None:
    owner = Owner(fail=1)
    owner.add(7)
    wait_for(lambda: owner.batches == [[7]])
    owner.flusher.close()


def test_close_logs_what_could_not_be_written_and_raises(caplog) -> None:
    owner = Owner(fail=100)
    owner.flusher.close()  # nothing queued: nothing to fail
    owner.flusher.closed = False
    owner.queue.append(3)
    with caplog.at_level(logging.ERROR), pytest.raises(OSError, match="disk full"):
        owner.flusher.close()
    assert "numbers could not be written: [3]" in caplog.text


def test_the_thread_holds_its_owner_only_weakly() -> None:
    owner = Owner()
    owner.add(1)
    batches = owner.batches
    wait_for(lambda: batches == [[1]])
    thread = owner.flusher._thread
    assert thread is not None and thread.is_alive()
    del owner
    gc.collect()
    thread.join(timeout=10)  # the thread notices within its 5 s wait
    assert not thread.is_alive()
