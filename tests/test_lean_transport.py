"""The lean streaming transport against llm's own (openai SDK) path: the same scripted
conversations give the same text, usage, ``response_json``, request, ``logs.db`` rows and errors.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import llm
import pytest

from consortium_lab import Gateway
from consortium_lab.apps.ports import free_port
from consortium_lab.config.consortium import Limits
from consortium_lab.gateway.calls import CallRequest
from consortium_lab.gateway.failures import CallFailed
from consortium_lab.gateway.llm_logs import log_to_llm

from fake_openai import Fault, ModelScript

REPLY = "The sky is blue because air scatters short wavelengths more than long ones."
PATHS = ("sdk", "lean")


def gateway(path: str, **kwargs: Any) -> Gateway:
    return Gateway(cache=None, retries=0, log_to_llm=False, lean_streaming=path == "lean", **kwargs)


def prepared(gw: Gateway, model_id: str) -> Any:
    """The async model object as the gateway calls it (shared client, transport installed)."""
    return gw.clients.share(llm.get_async_model(model_id))


async def converse(gw: Gateway, model_id: str) -> Any:
    model = prepared(gw, model_id)
    response = model.prompt(
        "And at sunset?",
        system="Answer briefly.",
        messages=[
            llm.system("Answer briefly."),
            llm.user("Why is the sky blue?"),
            llm.assistant("Rayleigh scattering."),
        ],
        stream=True,
        temperature=0.3,
        max_tokens=200,
    )
    chunks = [chunk async for chunk in response]
    await response.usage()
    return response, "".join(chunks)


LOG_TABLES = ("turns", "messages", "parts")


def rows(db: Path) -> dict[str, list[dict[str, Any]]]:
    """llm's logged rows per table, without what differs from call to call (ids, times)."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        got = {t: [dict(r) for r in conn.execute(f"select * from {t}")] for t in LOG_TABLES}
    finally:
        conn.close()
    for table in got.values():
        for row in table:
            for column in list(row):
                if column == "id" or column.endswith(("_id", "_utc", "_ms")):
                    row.pop(column)
                elif isinstance(row[column], str) and row[column].startswith("{"):
                    row[column] = _without_ids(row[column])
    return got


def _without_ids(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict):
        data.pop("id", None)
        data.pop("created", None)
    return json.dumps(data, sort_keys=True)


async def test_same_text_usage_response_json_request_and_log_rows(fake_openai, tmp_path):
    fake_openai.add_model("m", ModelScript(reply=REPLY, chunk_words=2))
    seen: dict[str, Any] = {}
    for path in PATHS:
        gw = gateway(path)
        fake_openai.reset()
        response, text = await converse(gw, "m")
        db = tmp_path / f"{path}.db"
        assert log_to_llm(response, path=db) == response.id
        request = fake_openai.requests_for("m")[0].json
        seen[path] = (response, text, request, rows(db))
        if path == "lean":
            assert gw.clients.lean is not None and gw.clients.lean.streams == 1
        await gw.aclose()
    (sdk, sdk_text, sdk_req, sdk_rows), (lean, lean_text, lean_req, lean_rows) = (
        seen["sdk"],
        seen["lean"],
    )
    assert lean_text == sdk_text == REPLY
    assert (lean.input_tokens, lean.output_tokens, lean.token_details) == (
        sdk.input_tokens,
        sdk.output_tokens,
        sdk.token_details,
    )
    assert lean.output_tokens == len(REPLY.split())
    strip = {"id", "created"}
    assert {k: v for k, v in lean.response_json.items() if k not in strip} == {
        k: v for k, v in sdk.response_json.items() if k not in strip
    }
    assert set(lean.response_json) == set(sdk.response_json)
    assert lean._prompt_json == sdk._prompt_json
    # The same request on the wire: model, messages, options, stream_options.
    assert lean_req == sdk_req
    assert sdk_req["temperature"] == 0.3 and sdk_req["max_tokens"] == 200
    assert lean_rows == sdk_rows
    assert len(lean_rows["turns"]) == 1 and lean_rows["messages"]
    assert any(REPLY in str(row.values()) for row in lean_rows["parts"])


async def test_custom_headers_and_keys_reach_the_server(fake_openai):
    fake_openai.add_model(
        "keyed",
        ModelScript(reply="ok then", api_key="sk-right"),
        key="sk-right",
        headers={"X-Team": "blue"},
    )
    gw = gateway("lean")
    out = await gw.call(CallRequest(model="keyed", prompt="Q"))
    assert out.text == "ok then"
    sent = fake_openai.requests_for("keyed")[0].headers
    assert sent["Authorization"] == "Bearer sk-right" and sent["X-Team"] == "blue"
    assert gw.clients.lean is not None and gw.clients.lean.streams == 1
    await gw.aclose()


def multiply(a: int, b: int) -> int:
    """Multiply two numbers (a tool offered to the model)."""
    return a * b


async def test_what_it_does_not_handle_goes_through_llm(fake_openai):
    """Non-streaming calls and prompts with tools use the SDK, with the same answer."""
    fake_openai.add_model("plain", ModelScript(reply="plain answer"), supports_tools=True)
    gw = gateway("lean")
    model = prepared(gw, "plain")
    response = model.prompt("Q", stream=False)
    assert await response.text() == "plain answer"
    assert gw.clients.lean is not None and gw.clients.lean.streams == 0
    with_tools = model.prompt("Q", tools=[multiply])
    assert await with_tools.text() == "plain answer"
    assert "tools" in fake_openai.requests_for("plain")[-1].json
    assert gw.clients.lean.streams == 0
    assert await model.prompt("Q").text() == "plain answer"
    assert gw.clients.lean.streams == 1
    await gw.aclose()


FAULTS = {
    "429 with Retry-After": (Fault.rate_limit(retry_after=2), "rate_limit"),
    "500": (Fault.status(500, "boom"), "server_error"),
    "timeout": (Fault.hang(), "timeout"),
    "cut stream": (Fault.cut(after_chunks=2), "connection"),
    "malformed SSE": (Fault.malformed(after_chunks=1), "malformed"),
}


async def failure(path: str, model: str) -> CallFailed:
    gw = gateway(path)
    limits = Limits(first_token_timeout=1.0)
    with pytest.raises(CallFailed) as caught:
        await gw.call(CallRequest(model=model, prompt="Q", limits=limits))
    await gw.aclose()
    return caught.value


@pytest.mark.parametrize("name", list(FAULTS))
async def test_every_fault_fails_the_same_way(fake_openai, name):
    fault, kind = FAULTS[name]
    fake_openai.add_model("f", ModelScript(reply=REPLY, fail_always=fault))
    sdk, lean = [await failure(path, "f") for path in PATHS]
    assert sdk.kind == lean.kind == kind
    assert lean.message == sdk.message
    assert lean.retry_after == sdk.retry_after
    if name == "429 with Retry-After":
        assert lean.retry_after == 2
        assert "Rate limit reached" in lean.message


async def test_refused_and_bad_key_fail_the_same_way(fake_openai):
    fake_openai.add_model("keyed", ModelScript(reply=REPLY, api_key="sk-right"), key="sk-wrong")
    fake_openai.server.add_model("gone")
    yaml_path = fake_openai.yaml_path
    yaml_path.write_text(
        yaml_path.read_text()
        + f"- model_id: gone\n  model_name: gone\n  api_base: http://127.0.0.1:{free_port()}/v1\n"
    )
    for model, kind in (("keyed", "auth"), ("gone", "connection")):
        sdk, lean = [await failure(path, model) for path in PATHS]
        assert sdk.kind == lean.kind == kind, model
        assert lean.message == sdk.message


async def test_the_proxy_environment_is_honoured(fake_openai, monkeypatch):
    """``HTTP_PROXY`` reaches both paths (a proxy that refuses fails the call the same way);
    ``NO_PROXY`` exempts the model's host from it."""
    fake_openai.add_model("proxied", ModelScript(reply=REPLY))
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    sdk, lean = [await failure(path, "proxied") for path in PATHS]
    assert sdk.kind == lean.kind == "connection"
    assert lean.message == sdk.message

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for path in PATHS:
        gw = gateway(path)
        outcome = await gw.call(CallRequest(model="proxied", prompt="Q"))
        assert outcome.text == REPLY
        await gw.aclose()
    assert len(fake_openai.requests_for("proxied")) == 2


@pytest.mark.parametrize(
    "pieces",
    [
        # one event per read (the splitter's shortcut), then the usual end
        [b'data: {"a":1}\n\n', b'data: {"b":2}\n\n', b"data: [DONE]\n\n"],
        # two events in one read, an event split across reads, CRLF line ends
        [b'data: {"a":1}\n\ndata: {"b"', b":2}\r\n\r\n", b"data: [DONE]\n\n"],
        # no space after the colon, a comment line, an event: field
        [b": keep-alive\n\n", b'event: x\ndata:{"a":1}\n\n', b'data: {"b":2}\n\ndata: [DONE]\n\n'],
    ],
)
async def test_sse_splitter_gives_each_event_s_data_however_the_reads_fall(pieces):
    from consortium_lab.gateway.lean import _sse_data

    class Content:  # the bytes as aiohttp's StreamReader.iter_any() hands them over
        async def iter_any(self) -> Any:
            for piece in pieces:
                yield piece

    class Response:
        content = Content()

    got = [data async for data in _sse_data(Response())]
    assert got == [b'{"a":1}', b'{"b":2}', b"[DONE]"]


async def test_sse_splitter_joins_the_lines_of_a_multi_line_event():
    from consortium_lab.gateway.lean import _sse_data

    class Content:
        async def iter_any(self) -> Any:
            yield b"data: one\ndata: two\n\n"
            yield b"data: three\n\n"

    class Response:
        content = Content()

    assert [d async for d in _sse_data(Response())] == [b"one\ntwo", b"three"]
