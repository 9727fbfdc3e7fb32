"""A real chat kernel's memory after its first run (issue #10: target <= 150 MB RSS).

Starts an ipykernel (through jupyter_client, as Voila does), runs in it what the chat notebook
runs (``voila.warm_up()``, ``voila.chat_widget()`` displayed) and then one run of the offline
demo consortium through the widget (``await chat.ask(...)``), and reads the kernel process's
resident memory (``VmRSS``) and its peak (``VmHWM``) from ``/proc`` after each step. Then the
modules the kernel holds, largest packages first by count, to show what costs memory.

Run: ``.venv/bin/python benchmarks/bench_kernel.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from figures import record  # noqa: E402

STEPS = {
    "bare ipykernel": "1",
    "after warm_up()": "from consortium_lab.apps import voila\nvoila.warm_up()",
    "after the chat widget is shown": "chat = voila.chat_widget()\ndisplay(chat)",
    "after the first demo run": "result = await chat.ask('What is a consortium?')\n"
    "assert result.status == 'completed', result.status",
}

DASHBOARD_STEPS = {
    "bare ipykernel": "1",
    "after warm_up_dashboard()": "from consortium_lab.apps import voila\nvoila.warm_up_dashboard()",
    "after the dashboard is shown": "display(voila.dashboard())",
}
"""What the dashboard notebook runs, in a second kernel, on the run log the chat run wrote."""

PACKAGES = """
import sys, collections
top = collections.Counter(name.split('.')[0] for name in list(sys.modules))
print(len(sys.modules), ' '.join(f'{n}:{c}' for n, c in top.most_common(25)))
"""


def memory_mb(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of a process, in MB (Linux ``/proc``)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def execute(client: object, code: str) -> str:
    """Run ``code`` in the kernel; its standard output, or an error naming the failure."""
    out: list[str] = []

    def hook(msg: dict) -> None:  # type: ignore[type-arg]
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = client.execute_interactive(code, timeout=300, output_hook=hook)  # type: ignore[attr-defined]
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"the kernel failed on {code!r}: {''.join(out)}")
    return "".join(out)


def main() -> None:
    from bench_engine import setup_home

    setup_home()
    os.environ["CONSORTIUM_LAB_DEMO_DELAY"] = "0"
    os.environ.setdefault("CONSORTIUM_LAB_CHAT_KERNEL", "1")  # as voila_env() sets it
    rss = measure(
        "a chat kernel's memory (ipykernel, the chat widget, a demo run)",
        STEPS,
        "chat kernel",
        "after the first run",
    )
    print(f"target: RSS after the first run <= 150 MB ({'met' if rss <= 150 else 'not met'})")
    measure(
        "a dashboard kernel's memory (no target)",
        DASHBOARD_STEPS,
        "dashboard kernel",
        "after it is shown",
    )
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def measure(title: str, steps: dict[str, str], name: str, last: str) -> float:
    """Run ``steps`` in a fresh kernel, printing its memory after each; its last RSS."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        pid = manager.provisioner.process.pid  # type: ignore[union-attr]
        print(f"# {title}")
        for step, code in steps.items():
            execute(client, code)
            rss, peak = memory_mb(pid)
            print(f"{step:34} RSS {rss:6.1f} MB  peak {peak:6.1f} MB")
        record(f"{name}: RSS {last}", rss, "MB")
        record(f"{name}: peak RSS {last}", peak, "MB")
        print("modules:", execute(client, PACKAGES).strip())
        return rss
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the same (one kernel either way)")
    parser.parse_args()
    main()
