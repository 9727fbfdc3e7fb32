"""The fake OpenAI server, exercised through the real llm client (sync and async paths).

Observed behaviour of the ``openai`` SDK that llm's plugin uses (``max_retries=2`` by default,
llm does not change it):

* 429, 408, 409 and 5xx answers are retried by the SDK itself, twice, so one request from llm
  can reach the server up to 3 times. The wait honours ``Retry-After`` / ``retry-after-ms``
  when 0 < value <= 120 s (else exponential backoff from 0.5 s, capped at 8 s, with jitter);
  ``x-should-retry: false`` disables the retry. A single transient 5xx is therefore invisible to
  llm callers: the retry succeeds. Tests keep faults fast with a tiny ``retry_after``.
* 400 (e.g. ``context_length_exceeded``) and 401 are not retried: exactly one request.
* Failures in the middle of a stream (connection cut, malformed SSE data) are never retried:
  the SDK already returned the stream object, so the error surfaces from iteration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import llm
import openai
import pytest

from fake_openai import FakeOpenAIServer, Fault, ModelScript, split_chunks

pytestmark = pytest.mark.timeout(30)

REPLY = "  Hello there,\n\nthis is   a  scripted\treply. \n"


async def _collect(model_id: str, prompt: str = "Say something", **kwargs) -> list[str]:
    response = llm.get_async_model(model_id).prompt(prompt, **kwargs)
    return [chunk async for chunk in response]


# ------------------------------------------------------------------ happy paths
async def test_async_stream_reproduces_reply_exactly_and_reports_usage(fake_openai):
    fake_openai.add_model("fake-a", ModelScript(reply=REPLY, chunk_words=2))
    response = llm.get_async_model("fake-a").prompt("Tell me three words please")
    chunks = [chunk async for chunk in response]

    assert "".join(chunks) == REPLY
    assert len(chunks) == len(split_chunks(REPLY, 2)) > 1
    usage = await response.usage()
    assert usage.input == 5
    assert usage.output == len(REPLY.split())

    [request] = fake_openai.requests
    assert request.model == "fake-a"
    assert request.stream is True
    assert request.json["stream_options"] == {"include_usage": True}
    assert request.messages[-1] == {"role": "user", "content": "Tell me three words please"}
    assert request.headers["Authorization"] == "Bearer DUMMY_KEY"
    assert fake_openai.disconnects == []
    fake_openai.wait_for(lambda: fake_openai.completed == ["fake-a"])
    assert fake_openai.active_streams == 0


async def test_async_non_stream(fake_openai):
    fake_openai.add_model("fake-a", ModelScript(reply=REPLY))
    response = llm.get_async_model("fake-a").prompt("hi", stream=False)
    assert await response.text() == REPLY
    usage = await response.usage()
    assert (usage.input, usage.output) == (1, len(REPLY.split()))
    assert fake_openai.requests[0].stream is False


def test_sync_stream_and_non_stream(fake_openai):
    fake_openai.add_model("fake-s", ModelScript(reply=REPLY, chunk_words=3))
    model = llm.get_model("fake-s")

    response = model.prompt("one two")
    assert "".join(response) == REPLY
    assert (response.usage().input, response.usage().output) == (2, len(REPLY.split()))

    response = model.prompt("one two", stream=False)
    assert response.text() == REPLY
    assert response.usage().output == len(REPLY.split())
    assert [r.stream for r in fake_openai.requests] == [True, False]


async def test_reply_callable_answers_from_messages(fake_openai):
    def echo(body: dict) -> str:
        system = next(m["content"] for m in body["messages"] if m["role"] == "system")
        return f"[{system}] you said: {body['messages'][-1]['content']}"

    fake_openai.add_model("echo", ModelScript(reply=echo))
    chunks = await _collect("echo", "ping pong", system="be brief")
    assert "".join(chunks) == "[be brief] you said: ping pong"
    assert fake_openai.requests[0].prompt_text == "be brief\nping pong"


def test_default_reply_names_the_model(fake_openai):
    fake_openai.add_model("plain")
    assert llm.get_model("plain").prompt("x").text() == "Answer from plain."


async def test_first_token_delay_is_respected(fake_openai):
    fake_openai.add_model("slow", ModelScript(reply="a b c", first_token_delay=0.4))
    start = time.monotonic()
    first_at = None
    async for _chunk in llm.get_async_model("slow").prompt("x"):
        if first_at is None:
            first_at = time.monotonic() - start
    assert first_at is not None
    assert 0.35 <= first_at < 10


async def test_token_delay_spaces_chunks(fake_openai):
    fake_openai.add_model("paced", ModelScript(reply="a b c d e", token_delay=0.1))
    start = time.monotonic()
    assert "".join(await _collect("paced")) == "a b c d e"
    assert time.monotonic() - start >= 0.35  # 4 gaps of 0.1 s, generous lower bound


# ------------------------------------------------------------------ llm wiring
def test_add_model_works_after_models_were_listed(fake_openai):
    fake_openai.add_model("first")
    ids = {m.model_id for m in llm.get_models()}
    assert "first" in ids and "second" not in ids
    # llm re-reads extra-openai-models.yaml on every lookup: no cache to invalidate.
    fake_openai.add_model("second", ModelScript(reply="late"))
    assert "second" in {m.model_id for m in llm.get_async_models()}
    assert llm.get_model("second").prompt("x").text() == "late"


def test_add_model_replaces_entry_and_accepts_yaml_fields(fake_openai):
    fake_openai.add_model("m", ModelScript(reply="one"))
    fake_openai.add_model("m", ModelScript(reply="two"), aliases=["m-alias"])
    assert len(fake_openai.yaml_path.read_text().split("model_id:")) == 2
    assert llm.get_model("m-alias").prompt("x").text() == "two"


def test_models_endpoint(fake_openai):
    fake_openai.add_model("listed")
    with urllib.request.urlopen(fake_openai.api_base + "/models", timeout=5) as resp:
        body = json.load(resp)
    assert [m["id"] for m in body["data"]] == ["listed"]


def test_unknown_model_is_404(fake_openai):
    fake_openai.add_model("known")
    fake_openai.server.scripts.pop("known")  # llm still knows it; the server does not
    with pytest.raises(openai.NotFoundError) as info:
        llm.get_model("known").prompt("x").text()
    assert info.value.code == "model_not_found"


# ------------------------------------------------------------------ faults
async def test_single_5xx_is_retried_by_the_openai_client(fake_openai):
    fake_openai.add_model(
        "flaky", ModelScript(reply="ok", faults=[Fault.status(500, retry_after=0.01)])
    )
    assert "".join(await _collect("flaky")) == "ok"
    assert [r.status for r in fake_openai.requests] == [500, 200]


async def test_5xx_forever_surfaces_after_client_retries(fake_openai):
    fake_openai.add_model(
        "down",
        ModelScript(faults=[Fault.status(503, "overloaded", retry_after=0.01, forever=True)]),
    )
    with pytest.raises(openai.InternalServerError) as info:
        await _collect("down")
    assert info.value.status_code == 503
    assert "overloaded" in str(info.value)
    assert len(fake_openai.requests) == 3  # 1 + max_retries=2


def test_fail_always_option_sync(fake_openai):
    fake_openai.add_model(
        "down", ModelScript(fail_always=Fault.status(502, "bad gateway", retry_after=0.01))
    )
    with pytest.raises(openai.InternalServerError):
        llm.get_model("down").prompt("x").text()
    assert len(fake_openai.requests) == 3


async def test_rate_limit_with_retry_after_then_success(fake_openai):
    fake_openai.add_model(
        "limited", ModelScript(reply="done", faults=[Fault.rate_limit(retry_after=0.05)] * 2)
    )
    assert "".join(await _collect("limited")) == "done"
    requests = fake_openai.requests
    assert [r.status for r in requests] == [429, 429, 200]
    assert requests[1].time - requests[0].time >= 0.04


async def test_rate_limit_not_retried_when_server_says_so(fake_openai):
    fake_openai.add_model(
        "limited", ModelScript(faults=[Fault.rate_limit(retry_after=5, should_retry=False)])
    )
    with pytest.raises(openai.RateLimitError) as info:
        await _collect("limited")
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after"] == "5"
    assert len(fake_openai.requests) == 1


async def test_context_length_exceeded(fake_openai):
    fake_openai.add_model("small", ModelScript(faults=[Fault.context_length_exceeded()]))
    with pytest.raises(openai.BadRequestError) as info:
        await _collect("small")
    assert info.value.code == "context_length_exceeded"
    assert "maximum context length" in str(info.value)
    assert len(fake_openai.requests) == 1  # 400 is not retried
    # faults are consumed: the next request is normal
    assert "".join(await _collect("small")) == "Answer from small."


def test_bad_api_key_is_401(fake_openai):
    fake_openai.add_model("keyed", ModelScript(reply="secret ok", api_key="sk-right"))
    with pytest.raises(openai.AuthenticationError) as info:
        llm.get_model("keyed").prompt("x").text()  # llm sends "DUMMY_KEY"
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"

    fake_openai.add_model("keyed", ModelScript(reply="secret ok", api_key="sk-right"), key="sk-no")
    with pytest.raises(openai.AuthenticationError):
        llm.get_model("keyed").prompt("x").text()

    fake_openai.add_model(
        "keyed", ModelScript(reply="secret ok", api_key="sk-right"), key="sk-right"
    )
    assert llm.get_model("keyed").prompt("x").text() == "secret ok"
    assert fake_openai.requests[-1].headers["Authorization"] == "Bearer sk-right"
    assert len(fake_openai.requests) == 3  # 401 is not retried


async def test_hang_times_out_and_registers_disconnect(fake_openai):
    fake_openai.add_model("stuck", ModelScript(faults=[Fault.hang()]))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_collect("stuck"), timeout=0.3)
    await fake_openai.async_wait_for(lambda: fake_openai.disconnects == ["stuck"])
    await fake_openai.async_wait_for(lambda: fake_openai.active_streams == 0)


async def test_hang_non_stream_times_out(fake_openai):
    fake_openai.add_model("stuck", ModelScript(faults=[Fault.hang()]))
    response = llm.get_async_model("stuck").prompt("x", stream=False)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(response.text(), timeout=0.3)
    await fake_openai.async_wait_for(lambda: fake_openai.disconnects == ["stuck"])


async def test_cut_stream_raises_after_partial_text(fake_openai):
    fake_openai.add_model("cut", ModelScript(reply="a b c d e", faults=[Fault.cut(after_chunks=2)]))
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in llm.get_async_model("cut").prompt("x"):
            received.append(chunk)
    assert "".join(received) == "a b "
    assert len(fake_openai.requests) == 1  # mid-stream failures are not retried
    assert fake_openai.disconnects == []  # server-side cut is not a client disconnect


def test_cut_sync_and_non_stream(fake_openai):
    fake_openai.add_model("cut", ModelScript(reply="fine", faults=[Fault.cut(0), Fault.cut(0)]))
    with pytest.raises(openai.APIConnectionError):
        llm.get_model("cut").prompt("x").text()
    # Non-stream: the connection drops before any response, which the SDK retries (after its
    # ~0.5 s backoff), and the retry gets a normal answer.
    assert llm.get_model("cut").prompt("x", stream=False).text() == "fine"
    assert [r.stream for r in fake_openai.requests] == [True, False, False]


async def test_malformed_sse_line_raises(fake_openai):
    script = ModelScript(reply="a b c", faults=[Fault.malformed(after_chunks=1)])
    fake_openai.add_model("bad", script)
    received: list[str] = []
    with pytest.raises(ValueError):  # json.JSONDecodeError from the SDK's SSE decoder
        async for chunk in llm.get_async_model("bad").prompt("x"):
            received.append(chunk)
    assert received == ["a "]


def test_malformed_non_stream_raises(fake_openai):
    fake_openai.add_model("bad", ModelScript(faults=[Fault.malformed()]))
    with pytest.raises(ValueError):
        llm.get_model("bad").prompt("x", stream=False).text()


# ------------------------------------------------------------------ cancellation
async def _cancel_after(model_id: str, n_chunks: int) -> list[str]:
    received: list[str] = []
    enough = asyncio.Event()

    async def consume() -> None:
        async for chunk in llm.get_async_model(model_id).prompt("go"):
            received.append(chunk)
            if len(received) >= n_chunks:
                enough.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(enough.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return received


async def test_cancelling_runaway_consumer_closes_the_stream(fake_openai):
    fake_openai.add_model("runaway", ModelScript(token_delay=0.005, faults=[Fault.runaway()]))
    received = await _cancel_after("runaway", 5)
    assert received[:3] == ["w0 ", "w1 ", "w2 "]
    await fake_openai.async_wait_for(lambda: fake_openai.disconnects == ["runaway"])
    await fake_openai.async_wait_for(lambda: fake_openai.active_streams == 0)
    assert fake_openai.completed == []


async def test_cancelling_mid_stream_registers_each_disconnect(fake_openai):
    words = " ".join(f"t{i}" for i in range(200))
    for name in ("left", "right"):
        fake_openai.add_model(name, ModelScript(reply=words, token_delay=0.02))

    async def consume(model_id: str) -> None:
        async for _chunk in llm.get_async_model(model_id).prompt("go"):
            pass

    tasks = [asyncio.create_task(consume(name)) for name in ("left", "right")]
    await fake_openai.async_wait_for(lambda: fake_openai.active_streams == 2)
    await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await fake_openai.async_wait_for(lambda: sorted(fake_openai.disconnects) == ["left", "right"])
    await fake_openai.async_wait_for(lambda: fake_openai.active_streams == 0)


async def test_runaway_ends_with_a_client_timeout(fake_openai):
    fake_openai.add_model("runaway", ModelScript(token_delay=0.01, faults=[Fault.runaway()]))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_collect("runaway"), timeout=0.3)
    await fake_openai.async_wait_for(lambda: fake_openai.disconnects == ["runaway"])


# ------------------------------------------------------------------ server lifecycle & fixtures
def test_server_context_manager_and_max_lifetime():
    with FakeOpenAIServer() as server:
        assert server.running
        port = server.port
    assert not server.running

    server = FakeOpenAIServer(max_lifetime=0.2).start()
    assert server.port != port
    assert server.wait_for(lambda: not server.running, timeout=5)
    server.stop()  # idempotent


def test_stop_ends_hung_requests_promptly():
    server = FakeOpenAIServer(models={"stuck": ModelScript(faults=[Fault.hang()])}).start()

    def call() -> None:
        with contextlib.suppress(Exception):
            urllib.request.urlopen(
                urllib.request.Request(
                    server.base_url + "/chat/completions",
                    data=json.dumps({"model": "stuck", "messages": []}).encode(),
                    headers={"Content-Type": "application/json"},
                ),
                timeout=10,
            )

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    server.wait_for(lambda: server.active_streams == 1)
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 5
    thread.join(5)
    assert server.disconnects == []


def test_split_chunks_round_trips():
    for text in ["", " ", "a", "  a  b\n\nc\t", "one two three four five", "\n\nx"]:
        for n in (1, 2, 3, 10):
            chunks = split_chunks(text, n)
            assert "".join(chunks) == text
            assert all(chunks)


def test_isolated_home_and_env(isolated_home, fake_openai):
    assert os.environ["LLM_USER_PATH"] == str(isolated_home.llm_user_path)
    assert os.environ["HOME"] == str(isolated_home.home)
    assert os.environ["CONSORTIUM_LAB_HOME"] == str(isolated_home.consortium_home)
    assert "OPENAI_API_KEY" not in os.environ
    assert "CONSORTIUM_LAB_DB" not in os.environ
    assert llm.user_dir() == isolated_home.llm_user_path
    env = fake_openai.env()
    for name in ("LLM_USER_PATH", "HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "PATH"):
        assert env[name] == os.environ[name]
    assert "127.0.0.1" in env["NO_PROXY"]


def test_cli_subprocess_reaches_the_same_models(fake_openai):
    fake_openai.add_model("fake-cli", ModelScript(reply="from the CLI", chunk_words=1))
    llm_cli = os.path.join(os.path.dirname(sys.executable), "llm")
    result = subprocess.run(
        [llm_cli, "-m", "fake-cli", "hello"],
        env=fake_openai.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from the CLI"
    assert fake_openai.requests[-1].prompt_text == "hello"
