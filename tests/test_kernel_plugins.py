"""Chat kernels do not load llm-consortium (and scikit-learn) for plugins they never use."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import sys
from consortium_lab.apps import voila
from consortium_lab.prompts.templates import template
voila.warm_up()
assert "<" in template("arbiter_prompt.xml")
print("llm_consortium" in sys.modules, "sklearn" in sys.modules)
"""


def loaded(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_chat_kernel_skips_llm_consortium_and_reads_templates_as_files(fake_openai):
    env = fake_openai.env()
    assert loaded(env) == "False False"
    env["CONSORTIUM_LAB_CHAT_PLUGINS"] = "all"
    assert loaded(env) == "True True"
