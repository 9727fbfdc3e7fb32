"""A gateway service killed while a consortium streams through it (``Gateway(remote=True)``):
only the member whose stream was cut fails, naming the service's URL; the arbiter's call,
refused while the service restarts, is sent again once it is back, and the run finishes."""

from __future__ import annotations

import asyncio
import os
import signal

import test_service
from consortium_lab import Consortium, Gateway
from consortium_lab.apps.connect import connect
from consortium_lab.engine.events import MemberDelta, MemberDone, MemberFailed

from fake_openai import ModelScript
from helpers import arbiter_reply, member_reply


async def test_a_gateway_killed_mid_stream_fails_only_the_cut_member(gateways, fake_openai):
    gateways.provider("quick", ModelScript(reply=member_reply("Quick answer.", 0.8)))
    # Long enough to be still streaming when the other member is done and the service killed.
    slow = ModelScript(reply=member_reply("slow " * 400, 0.7), token_delay=0.05)
    gateways.provider("slow", slow)
    gateways.provider("judge", ModelScript(reply=arbiter_reply("Joint answer.", 0.9)))
    service = gateways.start()
    connect(service.url, test_service.ALICE, prefix="gw-")
    remote = Gateway(remote=True)
    consortium = Consortium(
        models=["gw-quick", "gw-slow"], arbiter="gw-judge", gateway=remote, max_iterations=1
    )
    quick_done = slow_streaming = killed = False
    failed: list[MemberFailed] = []
    restart: asyncio.Future[object] | None = None
    run = consortium.stream("Why is the sky blue?")
    async for event in run:
        quick_done = quick_done or (isinstance(event, MemberDone) and event.model == "gw-quick")
        slow_streaming = slow_streaming or (
            isinstance(event, MemberDelta) and event.model == "gw-slow"
        )
        if quick_done and slow_streaming and not killed and service.process is not None:
            os.kill(service.process.pid, signal.SIGKILL)
            service.process.wait()
            killed = True
        if isinstance(event, MemberFailed):
            failed.append(event)
            # Bring the service back on its port while the run goes on: the arbiter is asked
            # of a dead service until it is up.
            service.port = int(service.url.rsplit(":", 1)[1].split("/")[0])
            restart = asyncio.ensure_future(asyncio.to_thread(service.start))
    assert restart is not None
    await restart
    result = run.result
    assert result.status == "completed", result
    assert result.text == "Joint answer."
    assert [(f.model, f.error_type) for f in failed] == [("gw-slow", "connection")]
    assert service.url.split("/v1")[0] in failed[0].error, failed[0].error
    members = {m.model: m for m in result.iterations[0].members}
    assert members["gw-quick"].answer == "Quick answer."
    assert members["gw-slow"].error == failed[0].error
    # The arbiter's call was refused at least once and sent again; it reached the provider once.
    retries = remote.metrics.registry.get_sample_value(
        f"{remote.metrics.retries_total._name}_total", {"model": "gw-judge"}
    )
    assert retries is not None and retries >= 1
    assert len(fake_openai.requests_for("judge")) == 1
    assert len(fake_openai.requests_for("slow")) == 1


def _wrapped(inner: BaseException) -> BaseException:
    """``inner`` as the gateway sees it: the SDK's error raised from it."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError("Connection error.") from exc
    except RuntimeError as outer:
        return outer


def test_refused_or_reset_before_an_answer_may_be_sent_again_a_cut_stream_not():
    from consortium_lab.gateway.failures import never_connected

    assert never_connected(_wrapped(ConnectionRefusedError(111, "refused")))
    assert never_connected(_wrapped(ConnectionResetError(104, "reset by peer")))
    assert not never_connected(_wrapped(TimeoutError("read timed out")))
    assert not never_connected(_wrapped(ValueError("Not enough data to satisfy transfer length")))
