"""The gateway HTTP service, end to end: llm's OpenAI plugin (registered by ``connect()``) →
``consortium-lab gateway`` (a real subprocess holding the provider key) → the loopback provider.

Also: the OpenAI wire format (SSE chunks, usage chunk, message mapping, options), OpenAI-style
errors, quotas across a restart, per-user cache, the admin API, and a Consortium run whose
members are the gateway's models. The ledger, access rules and settings are unit-tested at the
end. ``HubTokens`` is tested against a real JupyterHub in the hub
integration (the only test double allowed is the OpenAI-compatible server).
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import llm
import pytest
import yaml

from consortium_lab import Consortium, Gateway
from consortium_lab.apps.connect import GatewayConnectError, connect, gateway_key_name
from consortium_lab.gateway.ledger import Rules, SQLiteLedger, UsageRecord
from consortium_lab.gateway.quotas import QuotaPolicy
from consortium_lab.service.auth import Identity, StaticTokens, parse_tokens
from consortium_lab.service.protocol import ChatMessage, ChunkFrames, messages_to_call
from consortium_lab.service.settings import ServiceSettings, SettingsError
from consortium_lab.service.settings_docs import settings_help

from fake_openai import Fault, ModelScript
from helpers import BIN, arbiter_reply, cli, member_reply, stop_process

PROVIDER_KEY = "sk-provider-secret-held-by-the-gateway"
ALICE = "tok-alice-0123456789abcdef"
BOB = "tok-bob-0123456789abcdef"
ADMIN = "tok-admin-0123456789abcdef"
TOKENS = {
    "tokens": {
        ALICE: {"user": "alice", "groups": ["staff"]},
        BOB: {"user": "bob", "groups": ["guests"]},
    }
}


@dataclass
class Reply:
    """One HTTP answer of the service."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        data = self.json()
        assert set(data) == {"error"}, data
        assert set(data["error"]) == {"message", "type", "code", "param"}, data
        return data["error"]


def sse_events(body: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    events = []
    for block in body.decode().split("\n\n"):
        lines = [line for line in block.splitlines() if line.startswith("data: ")]
        if lines:
            events.append("\n".join(line[len("data: ") :] for line in lines))
    return events


@dataclass
class GatewayProcess:
    """``consortium-lab gateway`` as a subprocess on a free 127.0.0.1 port."""

    config: Path
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[str] | None = None
    url: str = ""
    port: int = 0
    """0: any free port; a restart may set the port it had, so clients keep their URL."""
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        args = [str(BIN / "consortium-lab"), "gateway", "--config", str(self.config)]
        args += ["--port", str(self.port), "--max-lifetime", "300"]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                args, env=self.env, stdout=subprocess.PIPE, stderr=log, text=True
            )
        stdout = self.process.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                self.lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if "listening on " in line:
                self.url = line.rsplit("listening on ", 1)[1].strip()
                return self
        self.stop()
        raise RuntimeError(f"the gateway did not start:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process, 15)

    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        *,
        data: bytes | None = None,
    ) -> Reply:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers), exc.read())

    def chat(self, token: str | None, model: str, prompt: str, **fields: Any) -> Reply:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], **fields}
        return self.request("POST", "/v1/chat/completions", token, body)


class Gateways:
    """Provider models for the service, and services started on this test's folders.

    The service gets its own ``LLM_USER_PATH`` (provider models on the loopback server, the
    provider key in its own ``keys.json``) and its own data folder; the test process keeps
    the isolated home, where ``connect()`` registers the gateway's models.
    """

    def __init__(self, fake_openai: Any, root: Path) -> None:
        self.fake = fake_openai
        self.root = root
        self.llm_dir = root / "service-llm"
        self.llm_dir.mkdir(parents=True)
        (self.llm_dir / "keys.json").write_text(json.dumps({"provider": PROVIDER_KEY}))
        self.tokens = root / "tokens.yaml"
        self.tokens.write_text(yaml.safe_dump(TOKENS))
        self.started: list[GatewayProcess] = []
        self.entries: list[dict[str, Any]] = []

    def provider(self, model_id: str, script: ModelScript | None = None) -> str:
        script = script or ModelScript()
        script.api_key = PROVIDER_KEY
        self.fake.server.add_model(model_id, script)
        self.entries.append(
            {
                "model_id": model_id,
                "model_name": model_id,
                "api_base": self.fake.api_base,
                "api_key_name": "provider",
            }
        )
        (self.llm_dir / "extra-openai-models.yaml").write_text(yaml.safe_dump(self.entries))
        return model_id

    def settings(self, name: str = "gw", **settings: Any) -> Path:
        config = {
            "ledger": f"{name}/ledger.db",
            "tokens_file": str(self.tokens),
            "backoff": 0.01,
            "max_backoff": 0.5,
            "limits": {"first_token_timeout": 10, "total_timeout": 60},
            **settings,
        }
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self, name: str = "gw", **settings: Any) -> GatewayProcess:
        env = self.fake.env()
        env.update(
            LLM_USER_PATH=str(self.llm_dir),
            CONSORTIUM_LAB_HOME=str(self.root / "service-home"),
            CONSORTIUM_GATEWAY_ADMIN_TOKENS=ADMIN,
        )
        config = self.root / f"{name}.yaml"
        if settings or not config.exists():
            config = self.settings(name, **settings)
        service = GatewayProcess(config, env, self.root / f"{name}.log")
        self.started.append(service)
        return service.start()

    def close(self) -> None:
        for service in self.started:
            service.stop()

    def check_logs(self) -> None:
        """No service logged a traceback: every error was answered, none escaped as a bug."""
        for service in self.started:
            log = service.log.read_text()
            assert "Traceback" not in log, log


def wait_for_day_window() -> None:
    """Day quotas reset at midnight UTC: never straddle it."""
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if (midnight - now).total_seconds() < 60:
        time.sleep((midnight - now).total_seconds() + 1)


# -- two hops --------------------------------------------------------------------------------
REPLY = "The quick brown fox jumps over the lazy dog, and then it naps in the sun."


def test_llm_streams_through_the_gateway_with_exact_text(gateways, fake_openai, isolated_home):
    gateways.provider("m", ModelScript(reply=REPLY, token_delay=0.005))
    gateways.provider("n", ModelScript(reply="Other."))
    # dropped once after 3 chunks: the gateway retries and the stream continues seamlessly
    gateways.provider("flaky", ModelScript(reply=REPLY, faults=[Fault.cut(after_chunks=3)]))
    service = gateways.start()

    yaml_path = isolated_home.llm_user_path / "extra-openai-models.yaml"
    mine = {"model_id": "mine", "model_name": "mine", "api_base": "http://127.0.0.1:9/v1"}
    yaml_path.write_text(yaml.safe_dump([mine]))
    ids = connect(service.url, ALICE, prefix="gw-")
    assert ids == ["gw-flaky", "gw-m", "gw-n"]
    entries = yaml.safe_load(yaml_path.read_text())
    assert entries[0] == mine  # someone else's entry is kept
    assert {e["model_id"]: e["model_name"] for e in entries[1:]} == {
        "gw-flaky": "flaky",
        "gw-m": "m",
        "gw-n": "n",
    }
    key_name = gateway_key_name(service.url)
    assert {e["api_base"] for e in entries[1:]} == {service.url + "/v1"}
    assert {e["api_key_name"] for e in entries[1:]} == {key_name}
    keys_path = isolated_home.llm_user_path / "keys.json"
    assert stat.S_IMODE(keys_path.stat().st_mode) == 0o600
    assert json.loads(keys_path.read_text())[key_name] == ALICE
    # the kernel's side never sees the provider key
    # (bytes: logs.db, a binary SQLite file, may already be there, written in the background)
    secret = PROVIDER_KEY.encode()
    assert not any(
        secret in p.read_bytes() for p in isolated_home.llm_user_path.iterdir() if p.is_file()
    )

    model = llm.get_model("gw-m")
    chunks = [c for c in model.prompt("Hello", stream=True) if c]
    assert "".join(chunks) == REPLY and len(chunks) > 5
    assert model.prompt("Not streamed", stream=False).text() == REPLY
    assert "".join(llm.get_model("gw-flaky").prompt("Hello", stream=True)) == REPLY
    assert len(fake_openai.requests_for("flaky")) == 2
    # the provider was called with the service's own key
    auth = {r.headers.get("Authorization") for r in fake_openai.requests_for("m")}
    assert auth == {f"Bearer {PROVIDER_KEY}"}

    # connecting again (fewer models allowed, say) replaces this gateway's entries only
    assert connect(service.url, ALICE, prefix="gw-") == ids
    assert yaml.safe_load(yaml_path.read_text()) == entries
    with pytest.raises(ValueError, match="already registered"):
        connect(service.url, BOB, key_name="another-name", prefix="gw-")
    with pytest.raises(GatewayConnectError, match="401"):
        connect(service.url, "wrong-token", prefix="x-")

    health = service.request("GET", "/health")
    assert health.status == 200 and health.json()["status"] == "ok"
    metrics = service.request("GET", "/metrics").body.decode()
    assert 'consortium_gateway_requests_total{model="m",outcome="ok"} 2.0' in metrics
    assert 'consortium_gateway_retries_total{model="flaky"} 1.0' in metrics
    assert (
        'consortium_service_chat_requests_total{model="m",outcome="ok",stream="true"} 1.0'
        in metrics
    )
    assert 'route="/v1/chat/completions"' in metrics


def test_openai_wire_format_messages_and_options(gateways, fake_openai):
    gateways.provider("m", ModelScript(reply=REPLY))
    service = gateways.start()
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": [{"type": "text", "text": "Again"}]},
    ]
    reply = service.request(
        "POST",
        "/v1/chat/completions",
        ALICE,
        {
            "model": "m",
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0.2,
            "max_tokens": 500,
            "seed": 7,
            "stop": ["END"],
            "user": "ignored-end-user-id",
        },
    )
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/event-stream")
    assert reply.body.endswith(b"data: [DONE]\n\n")
    events = sse_events(reply.body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "m" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == REPLY
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])

    sent = fake_openai.requests_for("m")[-1].json
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "Again"),
    ]
    assert (sent["temperature"], sent["max_tokens"], sent["seed"], sent["stop"]) == (
        0.2,
        500,
        7,
        "END",
    )

    plain = service.chat(ALICE, "m", "Plain please")
    data = plain.json()
    assert plain.status == 200 and data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {
        "role": "assistant",
        "content": REPLY,
        "refusal": None,
    }
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["total_tokens"] == (
        data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
    )
    assert data["consortium"]["served_by"] == "m" and data["consortium"]["cached"] is False
    again = service.chat(ALICE, "m", "Plain please").json()
    assert again["consortium"]["cached"] is True and again["choices"][0]["message"]["content"] == (
        REPLY
    )


def test_errors_are_openai_shaped_with_the_right_status(gateways, fake_openai):
    gateways.provider("m", ModelScript(reply="Fine."))
    gateways.provider("down", ModelScript(fail_always=Fault.status(500, "upstream exploded")))
    gateways.provider("slow", ModelScript(fail_always=Fault.hang()))
    gateways.provider("runaway", ModelScript(fail_always=Fault.runaway()))
    # 1 s to the first token: "slow" hangs past it quickly, while on a loaded 2-core machine
    # every attempt at "down" still reaches the provider before it (0.3 s flaked: 2 of 3).
    service = gateways.start(limits={"first_token_timeout": 1.0, "total_timeout": 30})
    replies = []

    def check(reply: Reply, status: int, code: str | None, param: str | None = None) -> dict:
        replies.append(reply)
        assert reply.status == status, reply.body
        error = reply.error
        assert error["code"] == code, error
        assert error["param"] == param, error
        assert error["message"]
        return error

    check(service.chat(None, "m", "Q"), 401, "invalid_api_key")
    missing = replies[-1]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    check(service.chat("not-a-token", "m", "Q"), 401, "invalid_api_key")
    check(service.request("GET", "/v1/models", "not-a-token"), 401, "invalid_api_key")
    check(service.request("GET", "/admin/quotas", ALICE), 403, "not_admin")
    check(service.chat(ADMIN, "m", "Q"), 403, "admin_token")
    error = check(service.chat(ALICE, "nope", "Q"), 404, "model_not_found", "model")
    assert "nope" in error["message"]
    check(
        service.request("POST", "/v1/chat/completions", ALICE, data=b"{not json"),
        400,
        "invalid_json",
    )
    error = check(
        service.request("POST", "/v1/chat/completions", ALICE, {"model": "m"}),
        400,
        "missing_field",
        "messages",
    )
    assert "messages" in error["message"]
    check(
        service.request(
            "POST",
            "/v1/chat/completions",
            ALICE,
            {"model": "m", "messages": [{"role": "user", "content": 5}]},
        ),
        400,
        None,
        "messages[0].content",
    )
    check(
        service.request(
            "POST",
            "/v1/chat/completions",
            ALICE,
            {"model": "m", "messages": [{"role": "assistant", "content": "Hi"}]},
        ),
        400,
        None,
        "messages",
    )
    check(service.chat(ALICE, "m", "Q", temperature=5), 400, "invalid_value", "temperature")
    check(
        service.chat(ALICE, "m", "Q", tools=[{"type": "function"}]),
        400,
        "unsupported_parameter",
        "tools",
    )
    check(service.request("GET", "/v1/nothing-here", ALICE), 404, "not_found")
    check(service.request("DELETE", "/v1/models", ALICE), 405, "method_not_allowed")
    assert fake_openai.requests_for("m") == []  # none of these reached the provider

    # the provider fails after the gateway's retries: its own message and the failure kind
    error = check(service.chat(ALICE, "down", "Q"), 502, "server_error")
    assert "upstream exploded" in error["message"]
    assert len(fake_openai.requests_for("down")) == 3  # 1 + 2 retries
    error = check(service.chat(ALICE, "down", "Q", stream=True), 502, "server_error")
    error = check(service.chat(ALICE, "slow", "Q"), 504, "timeout")
    assert "first token" in error["message"]
    # a runaway answer is cut at max_tokens, as OpenAI does: finish_reason "length"
    cut = service.chat(ALICE, "runaway", "Q", max_tokens=20)
    assert cut.status == 200 and cut.json()["choices"][0]["finish_reason"] == "length"
    assert cut.json()["choices"][0]["message"]["content"].startswith("w0 w1")
    for reply in replies:
        assert b"Traceback" not in reply.body and b'File "' not in reply.body


def test_a_stream_the_client_leaves_stops_the_provider_stream(gateways, fake_openai):
    long_reply = " ".join(f"word{i}" for i in range(400))
    gateways.provider("m", ModelScript(reply=long_reply, token_delay=0.02))
    service = gateways.start()
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Q"}]}
    headers = {"Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"}
    conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
    response = conn.getresponse()
    assert response.status == 200
    seen = b""
    while b"word0" not in seen:  # the answer has started streaming
        piece = response.read1(4096)
        assert piece, seen
        seen += piece
    conn.close()  # the client goes away mid-answer
    fake_openai.wait_for(lambda: "m" in fake_openai.disconnects, timeout=20)
    assert "m" not in fake_openai.completed

    def recorded() -> bool:
        reply = service.request("GET", "/admin/usage/records", ADMIN)
        return [r["outcome"] for r in reply.json()["records"]] == ["cancelled"]

    fake_openai.wait_for(recorded, timeout=10)


# -- quotas, restart, cache, ACL ---------------------------------------------------------------
def test_quota_429_without_provider_call_and_kept_across_a_restart(gateways, fake_openai):
    wait_for_day_window()
    gateways.provider("m", ModelScript(reply="Fine."))
    service = gateways.start()
    put = service.request("PUT", "/admin/quotas/users/alice", ADMIN, {"requests_per_day": 2})
    assert put.status == 200 and put.json()["policy"]["requests_per_day"] == 2
    assert service.chat(ALICE, "m", "one").status == 200
    assert service.chat(ALICE, "m", "two", stream=True).status == 200
    refused = service.chat(ALICE, "m", "three")
    assert refused.status == 429
    error = refused.error
    assert error["code"] == "quota_exceeded" and error["type"] == "insufficient_quota"
    assert "2 requests per day" in error["message"] and "resets at" in error["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 86_400
    assert refused.headers["x-should-retry"] == "false"
    streamed = service.chat(ALICE, "m", "three", stream=True)
    assert streamed.status == 429 and streamed.error["code"] == "quota_exceeded"
    assert len(fake_openai.requests_for("m")) == 2  # refused calls never reached the provider
    assert service.chat(BOB, "m", "one").status == 200  # bob has no quota

    service.stop()
    restarted = gateways.start()  # the same config: the same ledger file
    assert restarted.url != "" and restarted.chat(ALICE, "m", "four").status == 429
    assert len(fake_openai.requests_for("m")) == 3
    quotas = restarted.request("GET", "/admin/quotas", ADMIN).json()
    assert quotas["overrides"]["user:alice"]["requests_per_day"] == 2
    user = restarted.request("GET", "/admin/users/alice", ADMIN).json()
    assert user["usage"]["requests_per_day"]["used"] == 2
    assert user["usage"]["requests_per_day"]["remaining"] == 0
    usage = restarted.request("GET", "/admin/usage?group_by=user,outcome", ADMIN).json()
    rows = {(r["user"], r["outcome"]): r["calls"] for r in usage["rows"]}
    assert rows == {("alice", "ok"): 2, ("alice", "quota"): 3, ("bob", "ok"): 1}
    records = restarted.request("GET", "/admin/usage/records?user=alice&limit=10", ADMIN).json()
    assert [r["outcome"] for r in records["records"]] == ["quota", "quota", "quota", "ok", "ok"]
    assert {r["model"] for r in records["records"]} == {"m"}
    # an operator lifts it: back to the baseline (no limit)
    assert restarted.request("DELETE", "/admin/quotas/users/alice", ADMIN).status == 200
    assert restarted.chat(ALICE, "m", "five").status == 200


def test_cache_is_per_user_unless_shared(gateways, fake_openai):
    gateways.provider("m", ModelScript(reply="Cached answer."))
    service = gateways.start()
    assert service.chat(ALICE, "m", "Q").json()["consortium"]["cached"] is False
    assert service.chat(ALICE, "m", "Q").json()["consortium"]["cached"] is True
    bob = service.chat(BOB, "m", "Q").json()
    assert bob["consortium"]["cached"] is False  # alice's answer is not served to bob
    assert len(fake_openai.requests_for("m")) == 2
    service.stop()

    shared = gateways.start("shared", shared_cache=True)
    assert shared.chat(ALICE, "m", "Q2").json()["consortium"]["cached"] is False
    assert shared.chat(BOB, "m", "Q2").json()["consortium"]["cached"] is True
    assert len(fake_openai.requests_for("m")) == 3


def test_acl_changes_through_the_admin_api_apply_while_running(gateways, fake_openai):
    gateways.provider("m", ModelScript(reply="M."))
    gateways.provider("n", ModelScript(reply="N."))
    service = gateways.start(acl={"*": ["m"]})

    def models(token: str) -> list[str]:
        return [m["id"] for m in service.request("GET", "/v1/models", token).json()["data"]]

    assert models(ALICE) == ["m"] and models(BOB) == ["m"]
    denied = service.chat(ALICE, "n", "Q")
    assert denied.status == 403 and denied.error["code"] == "model_not_allowed"
    put = service.request("PUT", "/admin/acl/users/alice", ADMIN, {"models": ["*"]})
    assert put.status == 200
    assert models(ALICE) == ["m", "n"] and service.chat(ALICE, "n", "Q").status == 200
    assert service.chat(BOB, "n", "Q").status == 403
    # a group's rule beats everyone's: guests (bob) may use nothing now
    assert service.request("PUT", "/admin/acl/groups/guests", ADMIN, {"models": []}).status == 200
    assert models(BOB) == [] and service.chat(BOB, "m", "Q").status == 403
    acl = service.request("GET", "/admin/acl", ADMIN).json()
    assert acl["baseline"] == {"*": ["m"]}
    assert acl["effective"] == {"*": ["m"], "group:guests": [], "user:alice": ["*"]}
    bad = service.request("PUT", "/admin/acl/users/alice", ADMIN, {"models": "everything"})
    assert bad.status == 400 and bad.error["param"] == "models"
    assert service.request("DELETE", "/admin/acl/users/alice", ADMIN).status == 200
    assert models(ALICE) == ["m"]
    assert len(fake_openai.requests_for("n")) == 1


async def test_consortium_of_gateway_models_with_a_remote_gateway(gateways, fake_openai):
    gateways.provider("m1", ModelScript(reply=member_reply("One.", 0.8)))
    gateways.provider("m2", ModelScript(reply=member_reply("Two.", 0.7)))
    gateways.provider("judge", ModelScript(reply=arbiter_reply("Joint answer.", 0.9)))
    service = gateways.start()
    ids = connect(service.url, ALICE, prefix="gw-")
    assert ids == ["gw-judge", "gw-m1", "gw-m2"]
    consortium = Consortium(
        models=["gw-m1", "gw-m2"], arbiter="gw-judge", gateway=Gateway(remote=True)
    )
    result = await consortium.run("What is it?")
    assert result.status == "completed" and result.text == "Joint answer."
    members = {m.model: m for m in result.iterations[0].members}
    assert members["gw-m1"].answer == "One." and members["gw-m2"].answer == "Two."
    for name in ("m1", "m2", "judge"):
        assert len(fake_openai.requests_for(name)) == 1
    usage = service.request("GET", "/admin/usage?group_by=user,model", ADMIN).json()["rows"]
    assert {(r["user"], r["model"], r["ok"]) for r in usage} == {
        ("alice", "m1", 1),
        ("alice", "m2", 1),
        ("alice", "judge", 1),
    }


# -- in-process units: settings, tokens, rules, the SQLite ledger ------------------------------
def test_settings_from_yaml_name_bad_fields_and_resolve_paths(tmp_path):
    config = tmp_path / "conf" / "gateway.yaml"
    config.parent.mkdir()
    config.write_text(
        yaml.safe_dump(
            {
                "ledger": "state/ledger.db",
                "default_quota": {"requests_per_minute": 10},
                "quotas": {"group:staff": {"tokens_per_day": 1000}},
                "acl": {"*": ["gpt-*"], "user:root": ["*"]},
            }
        )
    )
    settings = ServiceSettings.load(config, {"port": 9000})
    assert settings.port == 9000 and settings.host == "127.0.0.1"
    assert settings.ledger_path() == config.parent / "state" / "ledger.db"
    assert settings.cache_spec() == str(config.parent / "state" / "cache")
    assert settings.baseline_quotas()["default"].requests_per_minute == 10
    assert ServiceSettings(redis="redis://127.0.0.1:1/0").cache_spec() == "redis://127.0.0.1:1/0"
    assert ServiceSettings(cache="none").cache_spec() is None
    with pytest.raises(SettingsError, match=r"^default_quota.requests_per_minute: "):
        ServiceSettings.from_dict({"default_quota": {"requests_per_minute": 0}})
    with pytest.raises(SettingsError, match=r"^prot: unknown setting.*port"):
        ServiceSettings.from_dict({"prot": 1})
    with pytest.raises(SettingsError, match=r"^quotas: "):
        ServiceSettings.from_dict({"quotas": {"alice": {}}})
    text = settings_help()
    for name in ServiceSettings.names():
        assert f"  {name}  (default:" in text
    traits = ServiceSettings.class_traits(config=True)
    assert set(ServiceSettings.names()) == set(traits)
    assert all(trait.help for trait in traits.values())


def test_cli_help_settings_and_bad_config(fake_openai, tmp_path):
    env = fake_openai.env()
    out = cli(env, "gateway", "--help-settings", check=False)
    assert out.returncode == 0 and "shared_cache" in out.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"retries": -1}))
    out = cli(env, "gateway", "--config", str(bad), check=False)
    assert out.returncode != 0 and "retries" in out.stderr and "Traceback" not in out.stderr


async def test_static_tokens_file_is_reloaded(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"t1-0123456789": "alice"}))
    tokens = StaticTokens.from_file(path)
    assert await tokens.authenticate("t1-0123456789") == Identity("alice")
    assert await tokens.authenticate("nope") is None
    path.write_text(json.dumps({"tokens": {"t2-0123456789": {"user": "bob", "admin": True}}}))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    assert await tokens.authenticate("t2-0123456789") == Identity("bob", admin=True)
    assert await tokens.authenticate("t1-0123456789") is None
    with pytest.raises(ValueError, match="entry 1") as info:
        parse_tokens({"secret-token-value": {"user": "x", "group": ["oops"]}})
    assert "secret-token-value" not in str(info.value)
    # HubTokens asks a real JupyterHub: tests/hub/test_hub_gateway.py.


def test_messages_to_call_maps_turns():
    def msgs(*pairs: tuple[str, Any]) -> list[ChatMessage]:
        return [ChatMessage(role=r, content=c) for r, c in pairs]  # type: ignore[arg-type]

    assert messages_to_call(msgs(("user", "Q"))) == (None, (), "Q")
    system, history, prompt = messages_to_call(
        msgs(
            ("system", "S1"),
            ("user", "a"),
            ("user", "b"),
            ("assistant", "A"),
            ("developer", "S2"),
            ("assistant", "B"),
            ("user", "c"),
        )
    )
    assert system == "S1\n\nS2" and history == (("a\n\nb", "A\n\nB"),) and prompt == "c"
    assert messages_to_call(msgs(("assistant", "hello"), ("user", "hi")))[1] == (("", "hello"),)


def test_rules_most_specific_wins_and_groups_combine_generously():
    rules = Rules(
        quotas={
            "default": QuotaPolicy(requests_per_day=10),
            "group:a": QuotaPolicy(requests_per_day=20, tokens_per_day=100),
            "group:b": QuotaPolicy(requests_per_day=5),
            "user:vip": QuotaPolicy(requests_per_day=1000),
        },
        acl={"*": ["*"], "group:guests": ["small-*"], "user:banned": []},
    )
    assert rules.quota_for("x").requests_per_day == 10
    both = rules.quota_for("x", ["a", "b"])
    assert both.requests_per_day == 20 and both.tokens_per_day is None  # b sets no token limit
    assert rules.quota_for("vip", ["a"]).requests_per_day == 1000
    assert rules.allows("x", [], "gpt-4o")
    assert rules.allows("g", ["guests"], "small-1") and not rules.allows("g", ["guests"], "big")
    assert not rules.allows("banned", [], "small-1")
    assert not Rules().allows("x", [], "m")  # no rules: nothing allowed


def test_sqlite_ledger_persists_and_aggregates(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = SQLiteLedger(path)
    t0 = datetime(2025, 1, 1, 12, tzinfo=UTC).timestamp()
    ledger.record(UsageRecord(t0, "alice", "m", "ok", "m", 10, 5, 0.5, False, 100.0))
    ledger.record(UsageRecord(t0 + 1, "alice", "m", "ok", "m", 10, 5, None, True, 0.0))
    ledger.record(UsageRecord(t0 + 2, "alice", "m", "quota"))
    ledger.record(UsageRecord(t0 + 86_400, "bob", "n", "ok", "n2", 1, 2, 0.25, False, 300.0))
    assert ledger.revision() == 0
    ledger.set_quota("user:alice", QuotaPolicy(requests_per_day=3))
    ledger.set_acl("*", ["m", "n*"])
    assert ledger.revision() == 2
    with pytest.raises(ValueError, match="subject"):
        ledger.set_quota("alice", QuotaPolicy())
    ledger.close()

    again = SQLiteLedger(path)
    assert again.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert again.quota_policies() == {"user:alice": QuotaPolicy(requests_per_day=3)}
    assert again.acl_rules() == {"*": ["m", "n*"]}
    assert again.revision() == 2
    rows = again.usage()
    assert rows == [
        {
            "user": "alice",
            "model": "m",
            "calls": 3,
            "ok": 2,
            "failed": 1,
            "cached": 1,
            "input_tokens": 20,
            "output_tokens": 10,
            "cost": 0.5,
            "latency_ms_avg": 100.0,
        },
        {
            "user": "bob",
            "model": "n",
            "calls": 1,
            "ok": 1,
            "failed": 0,
            "cached": 0,
            "input_tokens": 1,
            "output_tokens": 2,
            "cost": 0.25,
            "latency_ms_avg": 300.0,
        },
    ]
    by_day = again.usage(group_by=["day"], since=t0 + 1)
    assert [(r["day"], r["calls"]) for r in by_day] == [("2025-01-01", 2), ("2025-01-02", 1)]
    assert again.usage(group_by=[], user="nobody") == []
    assert [r.outcome for r in again.records(user="alice")] == ["quota", "ok", "ok"]
    assert again.records(limit=1)[0].served_by == "n2"
    with pytest.raises(ValueError, match="group_by"):
        again.usage(group_by=["prompt"])
    rules = again.rules({"default": QuotaPolicy(requests_per_day=1)}, {"*": ["*"]})
    assert rules.quota_for("alice").requests_per_day == 3
    assert rules.quota_for("carol").requests_per_day == 1
    assert rules.acl["*"] == ["m", "n*"]  # the override beats the baseline
    again.set_quota("user:alice", None)
    assert again.quota_policies() == {}
    again.close()


def test_sqlite_ledger_record_later_batches_and_loses_nothing(tmp_path, monkeypatch):
    path = tmp_path / "ledger.db"
    ledger = SQLiteLedger(path)
    t0 = datetime(2025, 1, 1, 12, tzinfo=UTC).timestamp()
    stored = threading.Event()
    told: list[BaseException | None] = []

    def done(error: BaseException | None) -> None:
        told.append(error)
        if len(told) == 3:
            stored.set()

    for i in range(3):
        ledger.record_later(UsageRecord(t0 + i, "alice", "m", "ok", "m", 1, 2), done)
    assert stored.wait(10), "the writer thread did not store the records"
    assert told == [None, None, None]
    # another connection (a replica) sees them once each is reported stored
    replica = SQLiteLedger(path)
    assert [r.time for r in replica.records(user="alice")] == [t0 + 2, t0 + 1, t0]

    # a failed write is reported, and the record stays queued and is stored later
    real = ledger.record_many
    failures = [OSError("disk full")]

    def flaky(records):
        if failures:
            raise failures.pop()
        real(records)

    monkeypatch.setattr(ledger, "record_many", flaky)
    failed = threading.Event()
    errors: list[BaseException | None] = []
    ledger.record_later(
        UsageRecord(t0 + 3, "bob", "m", "quota"), lambda e: (errors.append(e), failed.set())
    )
    assert failed.wait(10)
    assert isinstance(errors[0], OSError)
    ledger.record_later(UsageRecord(t0 + 4, "bob", "m", "ok"))
    # reads through the ledger write what is queued first, in order
    assert [r.outcome for r in ledger.records(user="bob")] == ["ok", "quota"]
    ledger.record_later(UsageRecord(t0 + 5, "carol", "m", "ok"))
    ledger.close()  # writes what is left
    with pytest.raises(RuntimeError, match="closed"):
        ledger.record_later(UsageRecord(t0 + 6, "carol", "m", "ok"))
    assert [r.user for r in replica.records(user="carol")] == ["carol"]
    assert len(replica.records()) == 6
    replica.close()


def test_sqlite_ledger_revision_without_waiting(tmp_path):
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    other = SQLiteLedger(tmp_path / "ledger.db")  # a replica's admin API
    assert ledger.revision_nowait() == ledger.revision() == 0
    other.set_acl("user:bob", ["m"])
    assert ledger.revision_nowait() == ledger.revision() == 1
    with other._lock:  # a writer busy on the main connection does not block this read
        other.db.conn.execute("BEGIN IMMEDIATE")
        assert ledger.revision_nowait() == 1
        other.db.conn.execute("ROLLBACK")
    for made in (ledger, other):
        made.close()


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize(
    "text",
    ["word ", "", 'quote " and \\ backslash', "é ü 😀 \u2028\n\t\x00", "\ufdd0content\ufdd0"],
)
def test_pre_encoded_content_chunks_are_byte_identical(text, include_usage):
    for model in ("m", 'odd "model" \ufdd0content\ufdd0 name'):
        frames = ChunkFrames("chatcmpl-abc", 1_700_000_000, model)
        fast = frames.content(text, include_usage)
        assert fast == frames.chunk({"content": text}, None, include_usage)
        data = json.loads(fast.decode().removeprefix("data: "))
        assert data["choices"][0]["delta"] == {"content": text} and data["model"] == model
