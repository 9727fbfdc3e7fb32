"""Helpers shared by the tests: scripted replies (what well-behaved and misbehaving models
write), running the ``consortium-lab`` command, stopping a server process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

# The console scripts of the venv running the tests.
BIN = Path(sys.executable).parent


def member_reply(answer: str, confidence: float | None = 0.8, thinking: str = "Reasoning.") -> str:
    """A reply in the member format of llm-consortium's system_prompt.xml."""
    conf = "" if confidence is None else f"\n<confidence>{confidence}</confidence>"
    return f"<thinking>{thinking}</thinking>\n<answer>{answer}</answer>{conf}"


def arbiter_reply(
    synthesis: str,
    confidence: float = 0.9,
    needs_iteration: bool = False,
    areas: tuple[str, ...] = (),
    ranking: tuple[int, ...] = (),
) -> str:
    """A reply in the arbiter template's <synthesis_output> format."""
    area_xml = "".join(f"<area>{a}</area>" for a in areas)
    rank_xml = "".join(f'<rank position="{i}">{r}</rank>' for i, r in enumerate(ranking, 1))
    return (
        "<thinking>Comparing the answers.</thinking>\n<synthesis_output>"
        "<analysis>They agree.</analysis><dissent>None.</dissent>"
        f"<synthesis>{synthesis}</synthesis><confidence>{confidence}</confidence>"
        f"<refinement_areas>{area_xml}</refinement_areas>"
        f"<needs_iteration>{str(needs_iteration).lower()}</needs_iteration>"
        f"<ranking>{rank_xml}</ranking></synthesis_output>"
    )


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message of a chat-completions request body."""
    for message in reversed(body["messages"]):
        if message["role"] == "user":
            content = message["content"]
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content)
            return str(content)
    return ""


def stop_process(process: subprocess.Popen[Any] | None, timeout: float = 10) -> None:
    """Terminate a server process the tests started, killing it if it does not stop in time."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def cli(
    env: dict[str, str] | None,
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run this venv's ``consortium-lab *args`` in ``env`` (``None``: the test's own, already
    isolated environment) and return what it did. ``check`` asserts that it exited 0, with its
    output in the failure; ``timeout`` only guards against a hang."""
    proc = subprocess.run(
        [str(BIN / "consortium-lab"), *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc
