"""Shared fixtures. Server logic lives in ``tests/fake_openai.py``; keep this file to fixtures."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fake_openai import FakeOpenAIServer, ModelScript
from helpers import arbiter_reply, member_reply

# Provider credentials and endpoint overrides that must never leak into a test.
PROVIDER_ENV_VARS = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "OPENAI_ORG_ID",
    "OPENAI_ORGANIZATION",
    "OPENAI_PROJECT_ID",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "MISTRAL_API_KEY",
    "GROQ_API_KEY",
    "OPENROUTER_API_KEY",
    "OPENROUTER_KEY",
    "DEEPSEEK_API_KEY",
    "XAI_API_KEY",
    "COHERE_API_KEY",
    "TOGETHER_API_KEY",
    "PERPLEXITY_API_KEY",
    "FIREWORKS_API_KEY",
    "LLM_OPENAI_SHOW_RESPONSES",
    "CONSORTIUM_LAB_DB",
)

LOOPBACK = "127.0.0.1,localhost,::1"


@dataclass(frozen=True)
class IsolatedHome:
    """The fresh folders a test runs in (all under ``tmp_path``)."""

    root: Path
    home: Path
    config: Path  # XDG_CONFIG_HOME
    data: Path  # XDG_DATA_HOME
    llm_user_path: Path  # LLM_USER_PATH
    consortium_home: Path  # CONSORTIUM_LAB_HOME

    @classmethod
    def make(cls, root: Path) -> IsolatedHome:
        """The folders under ``root``, created."""
        paths = cls(
            root=root,
            home=root / "home",
            config=root / "home" / ".config",
            data=root / "home" / ".local" / "share",
            llm_user_path=root / "llm",
            consortium_home=root / "consortium-lab",
        )
        for path in (paths.config, paths.data, paths.llm_user_path, paths.consortium_home):
            path.mkdir(parents=True, exist_ok=True)
        return paths


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> IsolatedHome:
    """Point every home/config/data variable at fresh folders and drop provider keys."""
    paths = IsolatedHome.make(tmp_path / "isolated")
    monkeypatch.setenv("HOME", str(paths.home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(paths.config))
    monkeypatch.setenv("XDG_DATA_HOME", str(paths.data))
    monkeypatch.setenv("LLM_USER_PATH", str(paths.llm_user_path))
    monkeypatch.setenv("CONSORTIUM_LAB_HOME", str(paths.consortium_home))
    for name in {*PROVIDER_ENV_VARS, *(n for n in os.environ if n.endswith("_API_KEY"))}:
        monkeypatch.delenv(name, raising=False)
    # llm-consortium caches one database connection per thread, opened at the first path it
    # saw: forget it so each test reaches its own home's file.
    import llm_consortium.db

    monkeypatch.setattr(llm_consortium.db.DatabaseConnection, "_thread_local", threading.local())
    # Loopback traffic must never go through a proxy.
    for name in ("NO_PROXY", "no_proxy"):
        current = os.environ.get(name)
        monkeypatch.setenv(name, f"{current},{LOOPBACK}" if current else LOOPBACK)
    return paths


class FakeOpenAI:
    """The ``fake_openai`` fixture: a running :class:`FakeOpenAIServer` plus llm wiring.

    Attributes not defined here (``requests``, ``disconnects``, ``active_streams``,
    ``wait_for``, ``async_wait_for``, ``requests_for``, ``script``...) come from ``server``.
    """

    def __init__(self, server: FakeOpenAIServer, home: IsolatedHome) -> None:
        self.server = server
        self.home = home

    @property
    def api_base(self) -> str:
        return self.server.base_url

    @property
    def yaml_path(self) -> Path:
        return self.home.llm_user_path / "extra-openai-models.yaml"

    def add_model(
        self,
        model_id: str,
        script: ModelScript | None = None,
        *,
        key: str | None = None,
        api_key_name: str | None = None,
        **yaml_fields: Any,
    ) -> str:
        """Script ``model_id`` on the server and register it with llm; returns ``model_id``.

        Writes/updates the entry in ``$LLM_USER_PATH/extra-openai-models.yaml`` (llm re-reads
        that file on every model lookup, so this works after models were listed). llm's plugin
        sends ``Bearer DUMMY_KEY`` for models with an ``api_base``; pass ``key`` to make it send
        that key instead (stored in ``keys.json`` under ``api_key_name``, default
        ``fake-<model_id>``). Extra keyword arguments become yaml fields (``aliases``,
        ``model_name``, ``can_stream``, ``supports_tools``, ``headers``...).
        """
        self.server.add_model(model_id, script)
        entry: dict[str, Any] = {
            "model_id": model_id,
            "model_name": model_id,
            "api_base": self.api_base,
        }
        if key is not None:
            api_key_name = api_key_name or f"fake-{model_id}"
            keys_path = self.home.llm_user_path / "keys.json"
            keys = json.loads(keys_path.read_text()) if keys_path.exists() else {}
            keys[api_key_name] = key
            keys_path.write_text(json.dumps(keys, indent=2))
        if api_key_name is not None:
            entry["api_key_name"] = api_key_name
        entry.update(yaml_fields)
        existing: list[dict[str, Any]] = []
        if self.yaml_path.exists():
            existing = yaml.safe_load(self.yaml_path.read_text()) or []
        entries = [e for e in existing if e.get("model_id") != model_id] + [entry]
        self.yaml_path.write_text(yaml.safe_dump(entries, sort_keys=False))
        return model_id

    def env(self) -> dict[str, str]:
        """A full environment for ``subprocess.run(..., env=fake_openai.env())``: the current
        (already isolated) environment, so LLM_USER_PATH, HOME, XDG_*, CONSORTIUM_LAB_HOME
        point at this test's folders and no provider key is present."""
        env = dict(os.environ)
        env.update(
            HOME=str(self.home.home),
            XDG_CONFIG_HOME=str(self.home.config),
            XDG_DATA_HOME=str(self.home.data),
            LLM_USER_PATH=str(self.home.llm_user_path),
            CONSORTIUM_LAB_HOME=str(self.home.consortium_home),
        )
        for name in PROVIDER_ENV_VARS:
            env.pop(name, None)
        return env

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)


@pytest.fixture
def fake_openai(isolated_home: IsolatedHome) -> Iterator[FakeOpenAI]:
    """A loopback OpenAI-compatible server wired into llm for this test (stopped afterwards)."""
    server = FakeOpenAIServer(max_lifetime=600).start()
    try:
        yield FakeOpenAI(server, isolated_home)
    finally:
        server.stop()


@pytest.fixture
def trio(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """``fake_openai`` with members ``a`` and ``b`` and the arbiter ``judge``, all answering well
    (test_compat and test_eval define a ``trio`` of their own)."""
    fake_openai.add_model("a", ModelScript(reply=member_reply("I am A.", 0.8)))
    fake_openai.add_model("b", ModelScript(reply=member_reply("I am B.", 0.7)))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply("Both.", 0.9)))
    return fake_openai


@pytest.fixture
def gateways(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[Any]:
    """Start gateway services (subprocesses) for this test: ``test_service.Gateways`` on this
    test's folders. They stop at teardown, and their logs must hold no traceback."""
    # Imported here: only the tests that start a gateway need the gateway extra.
    from test_service import Gateways

    made = Gateways(fake_openai, tmp_path / "gateways")
    try:
        yield made
    finally:
        made.close()
    made.check_logs()


@pytest.fixture
def redis_binary() -> str:
    """The path of ``redis-server``; skips the test when it is not installed."""
    from redis_server import find_redis_server

    binary = find_redis_server()
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    return binary


@pytest.fixture
def redis_server(redis_binary: str, tmp_path: Path) -> Iterator[Any]:
    """A real ``redis-server`` on a free 127.0.0.1 port, without persistence (stopped after the
    test). Skips only when the binary is not installed."""
    from redis_server import RedisServer

    with RedisServer(redis_binary, tmp_path / "redis") as server:
        yield server
