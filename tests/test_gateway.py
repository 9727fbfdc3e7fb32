"""The in-process gateway against the loopback server: the fault matrix, cache, fallbacks,
cool-downs, model groups and concurrency limits — each checked in the events and the run log."""

from __future__ import annotations

import socket

import pytest

from consortium_lab import Consortium, Gateway, runs

from fake_openai import Fault, ModelScript
from helpers import arbiter_reply, member_reply

ANSWER = member_reply("The answer is forty two.", 0.8)


@pytest.fixture
def judge(fake_openai):
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Synth.", 0.9)))
    return "judge"


def gateway(tmp_path, **kwargs):
    kwargs.setdefault("cache", None)
    return Gateway(backoff=0.01, max_backoff=2.0, **kwargs)


async def run_one(model, tmp_path, gw=None, **kwargs):
    consortium = Consortium(
        models=[model], arbiter="judge", gateway=gw or gateway(tmp_path), **kwargs
    )
    events = [e async for e in consortium.stream("Q")]
    result = runs.get(events[0].run_id)  # what the run log kept
    return events, result


def member_events(events, model):
    done = [e for e in events if e.kind in ("member_done", "member_failed") and e.model == model]
    assert len(done) == 1
    return done[0]


# -- the fault matrix ---------------------------------------------------------------------------
async def test_429_with_retry_after_is_waited_then_succeeds(fake_openai, judge, tmp_path):
    fake_openai.add_model(
        "m", ModelScript(reply=ANSWER, faults=[Fault.rate_limit(retry_after=0.3)])
    )
    gw = gateway(tmp_path)
    events, logged = await run_one("m", tmp_path, gw)
    done = member_events(events, "m")
    assert done.kind == "member_done" and done.attempts == 2
    times = [r.time for r in fake_openai.requests_for("m")]
    assert times[1] - times[0] >= 0.3  # Retry-After honoured
    assert logged.iterations[0].members[0].attempts == 2
    assert b'consortium_gateway_retries_total{model="m"} 1.0' in gw.metrics.render()


async def test_500_then_success(fake_openai, judge, tmp_path):
    fake_openai.add_model("m", ModelScript(reply=ANSWER, faults=[Fault.status(500, "boom")]))
    events, _ = await run_one("m", tmp_path)
    done = member_events(events, "m")
    assert done.kind == "member_done" and done.attempts == 2 and done.served_by == "m"


async def test_500_forever_without_fallback_fails_member_with_its_message(
    fake_openai, judge, tmp_path
):
    fake_openai.add_model("m", ModelScript(fail_always=Fault.status(500, "upstream exploded")))
    fake_openai.add_model("ok", ModelScript(reply=ANSWER))
    consortium = Consortium(models=["m", "ok"], arbiter="judge", gateway=gateway(tmp_path))
    events = [e async for e in consortium.stream("Q")]
    failed = member_events(events, "m")
    assert failed.kind == "member_failed" and failed.error_type == "server_error"
    assert "upstream exploded" in failed.error and failed.attempts == 3
    assert len(fake_openai.requests_for("m")) == 3
    logged = runs.get(events[0].run_id).iterations[0]
    assert {m.model: m.status for m in logged.members} == {"m": "failed", "ok": "done"}


async def test_500_forever_with_fallback_is_served_by_the_fallback(fake_openai, judge, tmp_path):
    fake_openai.add_model("m", ModelScript(fail_always=Fault.status(500, "down")))
    fake_openai.add_model("backup", ModelScript(reply=ANSWER))
    gw = gateway(tmp_path, fallbacks={"m": ["backup"]})
    events, logged = await run_one("m", tmp_path, gw)
    done = member_events(events, "m")
    assert done.kind == "member_done" and done.served_by == "backup" and done.attempts == 4
    assert logged.iterations[0].members[0].served_by == "backup"
    assert b'consortium_gateway_fallbacks_total{fallback="backup",model="m"} 1.0' in (
        gw.metrics.render()
    )


async def test_timeout_before_first_token_is_retried(fake_openai, judge, tmp_path):
    fake_openai.add_model("m", ModelScript(reply=ANSWER, faults=[Fault.hang()]))
    events, _ = await run_one("m", tmp_path, limits={"first_token_timeout": 0.3})
    done = member_events(events, "m")
    assert done.kind == "member_done" and done.attempts == 2
    await fake_openai.async_wait_for(lambda: "m" in fake_openai.disconnects, timeout=5)


async def test_timeout_forever_fails_as_timeout(fake_openai, judge, tmp_path):
    fake_openai.add_model("m", ModelScript(fail_always=Fault.hang()))
    events, _ = await run_one("m", tmp_path, limits={"first_token_timeout": 0.2})
    failed = member_events(events, "m")
    assert failed.error_type == "timeout" and "first token" in failed.error


async def test_stream_cut_midway_restarts_and_is_not_cached(fake_openai, judge, tmp_path):
    fake_openai.add_model("m", ModelScript(reply=ANSWER, faults=[Fault.cut(after_chunks=3)]))
    gw = gateway(tmp_path, cache=tmp_path / "cache")
    events, _ = await run_one("m", tmp_path, gw)
    done = member_events(events, "m")
    assert done.kind == "member_done" and done.text == ANSWER and done.attempts == 2
    deltas = [e for e in events if e.kind == "member_delta" and e.model == "m"]
    restart = next(i for i, d in enumerate(deltas) if d.restart)
    assert restart > 0  # some text streamed before the cut
    assert "".join(d.text for d in deltas[restart:]) == ANSWER
    # only the complete answer went into the cache: a re-run is one cached replay
    again, _ = await run_one("m", tmp_path, gw)
    assert member_events(again, "m").cached is True
    assert len(fake_openai.requests_for("m")) == 2


async def test_malformed_sse_is_retried(fake_openai, judge, tmp_path):
    fake_openai.add_model("m", ModelScript(reply=ANSWER, faults=[Fault.malformed(after_chunks=2)]))
    events, _ = await run_one("m", tmp_path)
    done = member_events(events, "m")
    assert done.kind == "member_done" and done.text == ANSWER and done.attempts == 2


async def test_connection_refused(fake_openai, judge, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    fake_openai.add_model("gone", api_base=f"http://127.0.0.1:{port}/v1")
    events, _ = await run_one("gone", tmp_path)
    failed = member_events(events, "gone")
    assert failed.error_type == "connection" and failed.attempts == 3


async def test_bad_key_is_not_retried(fake_openai, judge, tmp_path):
    fake_openai.add_model("m", ModelScript(reply=ANSWER, api_key="right"), key="wrong")
    events, _ = await run_one("m", tmp_path)
    failed = member_events(events, "m")
    assert failed.error_type == "auth" and failed.attempts == 1
    assert len(fake_openai.requests_for("m")) == 1


async def test_runaway_output_is_cut_and_not_retried(fake_openai, judge, tmp_path):
    fake_openai.add_model("m", ModelScript(fail_always=Fault.runaway()))
    fake_openai.add_model("backup", ModelScript(reply=ANSWER))
    gw = gateway(tmp_path, fallbacks={"m": ["backup"]})
    events, logged = await run_one("m", tmp_path, gw, limits={"max_output_tokens": 100})
    failed = member_events(events, "m")
    assert failed.error_type == "cut_off" and failed.attempts == 1
    assert fake_openai.requests_for("backup") == []
    assert logged.iterations[0].members[0].error_type == "cut_off"
    await fake_openai.async_wait_for(lambda: "m" in fake_openai.disconnects, timeout=5)


# -- cache ----------------------------------------------------------------------------------------
async def test_cached_rerun_replays_members_and_only_arbiter_change_reuses_them(
    fake_openai, judge, tmp_path
):
    fake_openai.add_model("a", ModelScript(reply=ANSWER, first_token_delay=0.2))
    fake_openai.add_model("b", ModelScript(reply=ANSWER, first_token_delay=0.2))
    fake_openai.add_model("judge2", ModelScript(reply=arbiter_reply("Other.", 0.95)))
    gw = gateway(tmp_path, cache=tmp_path / "cache")
    first = await Consortium(models=["a", "b"], arbiter="judge", gateway=gw).run("Q")
    assert not any(m.cached for m in first.iterations[0].members)
    second = await Consortium(models=["a", "b"], arbiter="judge2", gateway=gw).run("Q")
    assert all(m.cached for m in second.iterations[0].members)
    assert second.text == "Other."
    assert len(fake_openai.requests_for("a")) == 1 and len(fake_openai.requests_for("b")) == 1
    assert all(m.cached for m in runs.get(second.run_id).iterations[0].members)
    third = await Consortium(models=["a", "b"], arbiter="judge", gateway=gw).run("Q")
    assert third.iterations[0].synthesis.cached
    assert b'consortium_gateway_cache_hits_total{model="a"} 2.0' in gw.metrics.render()


async def test_cache_bypass_refresh_and_per_model_settings(fake_openai, judge, tmp_path):
    fake_openai.add_model("a", ModelScript(reply=ANSWER))
    fake_openai.add_model("never", ModelScript(reply=ANSWER))
    gw = gateway(tmp_path, cache=tmp_path / "cache", model_settings={"never": {"cache": False}})
    consortium = Consortium(models=["a", "never"], arbiter="judge", gateway=gw)
    await consortium.run("Q")
    await consortium.run("Q")
    assert len(fake_openai.requests_for("a")) == 1 and len(fake_openai.requests_for("never")) == 2
    await consortium.run("Q", cache="bypass")
    assert len(fake_openai.requests_for("a")) == 2
    await consortium.run("Q", cache="refresh")
    assert len(fake_openai.requests_for("a")) == 3
    result = await consortium.run("Q")
    assert len(fake_openai.requests_for("a")) == 3
    assert next(m for m in result.iterations[0].members if m.model == "a").cached


async def test_cache_key_covers_options_system_prompt_and_history(fake_openai, judge, tmp_path):
    fake_openai.add_model("a", ModelScript(reply=ANSWER))
    gw = gateway(tmp_path, cache=tmp_path / "cache")
    await Consortium(models=["a"], arbiter="judge", gateway=gw).run("Q")
    await Consortium(
        models=["a"], arbiter="judge", gateway=gw, member_options={"a": {"temperature": 0.1}}
    ).run("Q")
    await Consortium(models=["a"], arbiter="judge", gateway=gw, system_prompt="Terse.").run("Q")
    chat = Consortium(models=["a"], arbiter="judge", gateway=gw).conversation()
    await chat.ask("Q")  # cached: same as the first run
    await chat.ask("Q")  # same prompt, but now with history: a new key
    assert len(fake_openai.requests_for("a")) == 4


async def test_cache_ttl_expires(fake_openai, judge, tmp_path):
    fake_openai.add_model("a", ModelScript(reply=ANSWER))
    gw = gateway(tmp_path, cache=tmp_path / "cache", ttl=0.2)
    consortium = Consortium(models=["a"], arbiter="judge", gateway=gw)
    await consortium.run("Q")
    await fake_openai.async_wait_for(lambda: False, timeout=0.3, raise_on_timeout=False)
    await consortium.run("Q")
    assert len(fake_openai.requests_for("a")) == 2


# -- health, groups, concurrency ----------------------------------------------------------------
async def test_failing_model_cools_down_instead_of_being_hammered(fake_openai, judge, tmp_path):
    fake_openai.add_model("m", ModelScript(fail_always=Fault.status(500, "down")))
    fake_openai.add_model("backup", ModelScript(reply=ANSWER))
    gw = gateway(tmp_path, retries=0, cooldown=60, cooldown_after=2, fallbacks={"m": ["backup"]})
    consortium = Consortium(models=["m"], arbiter="judge", gateway=gw)
    for _ in range(4):
        result = await consortium.run("Q")
        assert result.iterations[0].members[0].served_by == "backup"
    assert len(fake_openai.requests_for("m")) == 2  # then it rested


async def test_model_group_routes_around_a_failed_deployment(fake_openai, judge, tmp_path):
    fake_openai.add_model("east", ModelScript(fail_always=Fault.status(503, "east down")))
    fake_openai.add_model("west", ModelScript(reply=ANSWER))
    gw = gateway(tmp_path, retries=0, groups={"smart": ["east", "west"]}, cooldown_after=1)
    consortium = Consortium(models=["smart:2"], arbiter="judge", gateway=gw)
    for _ in range(3):
        result = await consortium.run("Q")
        assert {m.served_by for m in result.iterations[0].members} == {"west"}
    assert len(fake_openai.requests_for("east")) <= 2  # taken out of rotation after failing


async def test_model_group_least_busy_spreads_concurrent_calls(fake_openai, judge, tmp_path):
    for name in ("d1", "d2"):
        fake_openai.add_model(name, ModelScript(reply=ANSWER, first_token_delay=0.3))
    gw = gateway(tmp_path, groups={"pool": ["d1", "d2"]})
    await Consortium(models=["pool:4"], arbiter="judge", gateway=gw).run("Q")
    assert len(fake_openai.requests_for("d1")) == 2 and len(fake_openai.requests_for("d2")) == 2


async def test_concurrency_limit_per_model(fake_openai, judge, tmp_path):
    fake_openai.add_model("m", ModelScript(reply=ANSWER, first_token_delay=0.2))
    peak = 0

    def track():
        nonlocal peak
        peak = max(peak, fake_openai.active_for("m"))
        return False

    gw = gateway(tmp_path, model_settings={"m": {"concurrency": 1}})
    consortium = Consortium(models=["m:3"], arbiter="judge", gateway=gw)
    import asyncio

    task = asyncio.ensure_future(consortium.run("Q"))
    while not task.done():
        track()
        await asyncio.sleep(0.01)
    await task
    assert peak == 1 and len(fake_openai.requests_for("m")) == 3


# -- the single stream timeout ----------------------------------------------------------------
async def test_total_timeout_cuts_a_slow_answer_and_is_not_retried(fake_openai, tmp_path):
    from consortium_lab.config.consortium import Limits
    from consortium_lab.gateway.calls import CallRequest
    from consortium_lab.gateway.failures import CallFailed

    long_answer = " ".join(f"w{i}" for i in range(200))
    fake_openai.add_model("slow", ModelScript(reply=long_answer, token_delay=0.05))
    fake_openai.add_model("late", ModelScript(reply=ANSWER, first_token_delay=2.0))
    gw = gateway(tmp_path)
    limits = Limits(first_token_timeout=5, total_timeout=0.4)
    seen: list[str] = []
    with pytest.raises(CallFailed) as info:
        await gw.call(
            CallRequest(model="slow", prompt="Q", limits=limits), lambda t, c: seen.append(t)
        )
    assert info.value.kind == "cut_off" and "not finished within 0.4 s" in info.value.message
    assert info.value.partial_text.startswith("w0 w1") and seen  # it had started
    assert len(fake_openai.requests_for("slow")) == 1
    # no first token before the total time is up: a timeout (retried), not a cut-off
    with pytest.raises(CallFailed) as info:
        await gw.call(CallRequest(model="late", prompt="Q", limits=limits))
    assert info.value.kind == "timeout" and "not finished within 0.4 s" in info.value.message
    # the first token's deadline no longer applies once it came
    fast = Limits(first_token_timeout=0.3, total_timeout=10)
    twenty = " ".join(long_answer.split()[:20])
    fake_openai.add_model("steady", ModelScript(reply=twenty, token_delay=0.03))
    outcome = await gw.call(CallRequest(model="steady", prompt="Q", limits=fast))
    assert outcome.text == twenty and outcome.latency_ms > 500


# -- the openai SDK's aiohttp client (what the gateway service uses) ----------------------------
@pytest.mark.parametrize(
    "fault", ["cut", "malformed", "status", "hang", "refused", "runaway", "bad_key"]
)
async def test_aiohttp_client_keeps_the_fault_matrix(fake_openai, judge, tmp_path, fault):
    gw = gateway(tmp_path, http_transport="aiohttp", fallbacks={"m": ["backup"]})
    fake_openai.add_model("backup", ModelScript(reply=ANSWER))
    # Short, so the hang is found quickly; but not so short that a retry's own first token
    # misses it on a loaded 2-core machine (0.3 s flaked here as a third attempt).
    limits: dict = {"first_token_timeout": 2.0}
    if fault == "refused":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        fake_openai.add_model("m", api_base=f"http://127.0.0.1:{port}/v1")
    elif fault == "bad_key":
        fake_openai.add_model("m", ModelScript(reply=ANSWER, api_key="right"), key="wrong")
    else:
        script = {
            "cut": ModelScript(reply=ANSWER, faults=[Fault.cut(after_chunks=3)]),
            "malformed": ModelScript(reply=ANSWER, faults=[Fault.malformed(after_chunks=2)]),
            "status": ModelScript(reply=ANSWER, faults=[Fault.status(500, "boom")]),
            "hang": ModelScript(reply=ANSWER, faults=[Fault.hang()]),
            "runaway": ModelScript(fail_always=Fault.runaway()),
        }[fault]
        fake_openai.add_model("m", script)
        if fault == "runaway":
            limits["max_output_tokens"] = 100
    try:
        events, _ = await run_one("m", tmp_path, gw, limits=limits)
    finally:
        await gw.aclose()
    done = member_events(events, "m")
    if fault in ("cut", "malformed", "status", "hang"):  # retried, then answered
        assert done.kind == "member_done" and done.served_by == "m" and done.attempts == 2
        assert done.text == ANSWER
    elif fault == "refused":  # a connection failure (the adapter says "timeout"), retried
        assert done.kind == "member_done" and done.served_by == "backup"
        assert done.attempts == 4
        assert b'failures_total{kind="connection",model="m"} 1.0' in gw.metrics.render()
    elif fault == "bad_key":  # not retried
        assert done.served_by == "backup" and done.attempts == 2
        assert b'failures_total{kind="auth",model="m"} 1.0' in gw.metrics.render()
    else:  # cut off, not retried, the provider's stream closed, the text so far kept
        assert done.kind == "member_done" and done.truncated and done.error_type == "cut_off"
        assert fake_openai.requests_for("backup") == []
        await fake_openai.async_wait_for(lambda: "m" in fake_openai.disconnects, timeout=10)
