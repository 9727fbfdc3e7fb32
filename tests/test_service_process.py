"""What the gateway service process keeps off a stream's path and out of its memory: the
ledger write of a finished stream (stored after the client has ``[DONE]``), the start-up heap
(frozen before it listens, so full garbage collections do not walk it while streams wait), and
pandas and numpy (which ``sqlite_utils`` would import, ~46 MB).

The service runs in this process on aiohttp's own test server (a real socket on 127.0.0.1);
the model is the loopback fake OpenAI server reached through llm's OpenAI plugin.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from typing import Any

import orjson
import yaml

from consortium_lab.service.app import GatewayService
from consortium_lab.service.preheat import FIRST_REQUEST_IMPORTS, preheat
from consortium_lab.service.settings import ServiceSettings

from fake_openai import ModelScript

TOKEN = "tok-alice-0123456789abcdef"


async def _serve(fake_openai: Any, tmp_path: Any) -> Any:
    from aiohttp.test_utils import TestClient, TestServer

    model = fake_openai.add_model("m-path", ModelScript(reply="one two three"))
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"tokens": {TOKEN: "alice"}}))
    settings = ServiceSettings.from_dict(
        {
            "ledger": str(tmp_path / "ledger.db"),
            "tokens_file": str(tokens),
            "cache": "none",
            "models": [model],
        }
    )
    service = GatewayService(settings)
    client = TestClient(TestServer(service.app(), host="127.0.0.1"))
    await client.start_server()
    return service, client, model


async def test_a_finished_stream_is_stored_after_the_client_has_its_end(fake_openai, tmp_path):
    """The usage record of a whole stream is written once ``[DONE]`` and the end of the body
    are out: the recorder, held until the client has read ``[DONE]``, does not hold the
    client (it did, when the record was stored first), and the record is then stored."""
    service, client, model = await _serve(fake_openai, tmp_path)
    client_has_done, stored = asyncio.Event(), asyncio.Event()
    order: list[str] = []
    real_record = service.chat.recorder.record

    async def record(*args: Any, **kwargs: Any) -> None:
        order.append("record called")
        # Generous, event-driven: set as soon as the client reads [DONE]. Storing before
        # the end is sent would wait here until the guard gives up.
        async with asyncio.timeout(120):
            await client_has_done.wait()
        order.append("client had [DONE]")
        await real_record(*args, **kwargs)
        stored.set()

    service.chat.recorder.record = record  # type: ignore[method-assign]
    try:
        response = await client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"model": model, "stream": True, "messages": [{"role": "user", "content": "Q"}]},
        )
        assert response.status == 200
        body = b""
        async for piece in response.content.iter_any():
            body += piece
            if b"data: [DONE]" in body:
                client_has_done.set()
        events = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]
        assert events[-1] == b"[DONE]"
        text = "".join(
            (orjson.loads(e)["choices"][0]["delta"].get("content") or "") for e in events[:-1]
        )
        assert text == "one two three"
        async with asyncio.timeout(120):
            await stored.wait()
        assert order == ["record called", "client had [DONE]"]
        # The handler returns once the record is stored; reads write anything queued first.
        records = await asyncio.to_thread(service.ledger.records, user="alice")
        assert [(r.model, r.outcome, r.stream) for r in records] == [(model, "ok", True)]
    finally:
        await client.close()
        await service.aclose()


def test_preheat_imports_the_first_request_s_modules_and_freezes_the_heap():
    try:
        frozen = preheat()
        assert frozen == gc.get_freeze_count() > 0
        assert all(name in sys.modules for name in FIRST_REQUEST_IMPORTS)
        # A collection no longer walks what was frozen: a new object is collected as usual.
        garbage: list[Any] = []
        garbage.append(garbage)
        del garbage
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()


def test_preheat_skips_a_missing_module_only_when_told_and_freezes_only_when_told(
    tmp_path, monkeypatch
):
    """The one import path of the service, the chat kernel and the dashboard kernel: a module
    that is not installed is skipped with ``missing_ok`` and named without it; an installed
    module that fails on its own import always raises; ``freeze=False`` freezes nothing."""
    import pytest

    (tmp_path / "cl_preheat_ok.py").write_text("VALUE = 1\n")
    (tmp_path / "cl_preheat_broken.py").write_text("import cl_preheat_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("cl_preheat_ok", "cl_preheat_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert gc.get_freeze_count() == 0
    try:
        assert preheat(["cl_preheat_missing", "cl_preheat_ok"], freeze=False) == 0
        assert "cl_preheat_ok" in sys.modules and "cl_preheat_missing" not in sys.modules
        with pytest.raises(ModuleNotFoundError) as missing:
            preheat(["cl_preheat_missing.sub"], freeze=False, missing_ok=False)
        assert missing.value.name == "cl_preheat_missing"
        with pytest.raises(ModuleNotFoundError) as broken:
            preheat(["cl_preheat_broken"], freeze=False, missing_ok=True)
        assert broken.value.name == "cl_preheat_absent_dependency"
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


# The console script's argv: ``consortium-lab gateway ...`` (the package is imported first).
AS_CLI = """
import sys
sys.argv[0] = "/somewhere/bin/consortium-lab"
import consortium_lab
print("pandas" in sys.modules, "numpy" in sys.modules, "sqlite_utils" in sys.modules)
"""


def test_the_gateway_process_imports_sqlite_utils_without_pandas(fake_openai):
    def imported(command: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", AS_CLI, command],
            env=fake_openai.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert imported("gateway") == "False False True"
    assert imported("run") == "True True True"  # other commands may hand numpy to sqlite_utils
