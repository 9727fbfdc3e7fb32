"""The benchmark's loopback OpenAI-compatible server, in its own process.

A separate process keeps the server's CPU time and GIL out of the measured process. It prints
its base URL on the first line of standard output and stops when standard input closes (or
after its maximum lifetime).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_openai import FakeOpenAIServer, ModelScript
from helpers import arbiter_reply, last_user_text, member_reply

MEMBERS = {"bench-a": 0.10, "bench-b": 0.15, "bench-c": 0.20, "bench-d": 0.25}
ARBITER = ("bench-judge", 0.15)
TOKENS, TOKEN_DELAY = 40, 0.002


def judge(body: dict) -> str:
    """Asks for a second iteration once, then converges (per run, so concurrent runs agree)."""
    if "Iteration 1 synthesis" in last_user_text(body):
        return arbiter_reply("Final answer.", 0.95)
    return arbiter_reply("Draft answer.", 0.5, needs_iteration=True, areas=("detail",))


def main() -> None:
    server = FakeOpenAIServer(max_lifetime=1800).start()
    answer = member_reply(" ".join(["word"] * TOKENS), 0.8)
    for model, delay in MEMBERS.items():
        server.add_model(
            model, ModelScript(reply=answer, first_token_delay=delay, token_delay=TOKEN_DELAY)
        )
    server.add_model(
        ARBITER[0], ModelScript(reply=judge, first_token_delay=ARBITER[1], token_delay=TOKEN_DELAY)
    )
    print(server.base_url, flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
