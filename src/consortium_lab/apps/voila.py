"""The Voila chat app: launch standalone Voila serving the app notebooks, and the helpers the
notebooks call.

``consortium-lab demo`` runs :func:`serve`: standalone Voila on ``127.0.0.1`` serving the
``notebooks/`` folder (``chat.ipynb`` is the landing page, ``dashboard.ipynb`` is linked from
it), with preheated kernels, through the ``consortium`` Voila template (Voila's lab template
without its CDN icon font, so the page loads nothing from outside). Needs the ``app`` extra
(``pip install 'consortium-lab[app]'``: voila, ipykernel, anywidget, ipywidgets, altair).

In the notebooks::

    from consortium_lab.apps import voila as app
    app.wait_for_page()          # a preheated kernel waits here for its page
    app.chat_widget()            # the chat, offline demo models when no provider key is set
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consortium_lab.apps.ports import free_port
from consortium_lab.apps.preheat import (  # the notebooks call them as voila.<name>()
    DASHBOARD_MODULES,
    FIRST_RUN_MODULES,
    wait_for_page,
    warm_up,
    warm_up_dashboard,
)
from consortium_lab.apps.voila_config import (
    DASHBOARD,
    DASHBOARD_POOL_SIZE,
    LANDING,
    config_file_options,
    trust_notebooks,
    voila_settings,
)
from consortium_lab.widget.assets import SERVED_ENV

if TYPE_CHECKING:
    from consortium_lab.widget.chat import ChatWidget

__all__ = [
    "CULL_IDLE_TIMEOUT",
    "CULL_INTERVAL",
    "DASHBOARD_MODULES",
    "FIRST_RUN_MODULES",
    "POOL_FILL_DELAY",
    "chat_url",
    "chat_widget",
    "dashboard",
    "dashboard_url",
    "free_port",
    "jupyter_data_dir",
    "notebooks_dir",
    "provider_key_set",
    "running",
    "serve",
    "stop",
    "voila_command",
    "voila_env",
    "wait_for_page",
    "wait_until_serving",
    "warm_up",
    "warm_up_dashboard",
]

HERE = Path(__file__).resolve().parent.parent
TEMPLATE = "consortium"
PROXY_EXTENSION = "@jupyterhub/jupyter-server-proxy"


def notebooks_dir() -> Path:
    """The app notebooks: inside the installed package (wheel), else the repository's
    ``notebooks/`` folder (editable install)."""
    for candidate in (HERE / "notebooks", HERE.parent.parent / "notebooks"):
        if (candidate / LANDING).is_file():
            return candidate
    raise FileNotFoundError(f"the app notebooks ({LANDING}) are not installed")


def jupyter_data_dir() -> Path:
    """The folder added to ``JUPYTER_PATH`` so Voila finds the ``consortium`` template."""
    return HERE / "jupyter"


CULL_IDLE_TIMEOUT = 600
"""Seconds a page's kernel may stay idle with no page connected before Voila shuts it down."""
CULL_INTERVAL = 60
"""Seconds between Voila's checks for idle kernels."""
POOL_FILL_DELAY = 5.0
"""Seconds Voila waits, after a page took a preheated kernel, before starting the kernel that
refills the pool: Voila's default (1 s) starts it (a Python process importing the library)
while that page is still loading, and on a small machine the two compete for the CPU."""


def voila_command(
    port: int,
    *,
    root: Path | None = None,
    preheat: bool = True,
    pool_size: int = 1,
    dashboard_pool_size: int = DASHBOARD_POOL_SIZE,
    theme: str = "light",
    base_url: str = "/",
    cull_idle_timeout: int = CULL_IDLE_TIMEOUT,
    cull_interval: int = CULL_INTERVAL,
    side_files: bool = True,
) -> list[str]:
    """The command line of standalone Voila serving the app notebooks on 127.0.0.1.

    With ``side_files`` (the default) the settings that are dicts go into a ``voila.json``
    written under this process's data folder, and the app notebooks are signed by a notary of
    their own there: a quiet start. A command run by another Unix user (a hub's user servers,
    built in the hub's process) cannot read those files: with ``side_files=False`` whoever
    starts the command writes ``voila_config.command_settings(command)`` into a ``voila.json``
    in the server's own ``JUPYTER_CONFIG_DIR`` (the hub's spawners do), and the notebooks stay
    unsigned (Voila
    says so once per page; it shows their outputs only).

    Kernels idle for ``cull_idle_timeout`` seconds with no page connected are shut down
    (checked every ``cull_interval`` seconds; 0 turns culling off): a page closed without an
    unload event (a killed tab, a sleeping laptop, a lost network) would otherwise keep its
    kernel forever. Voila never culls its preheated pool, only kernels a page has taken.

    With ``preheat``, ``pool_size`` chat kernels and ``dashboard_pool_size`` dashboard kernels
    wait for their pages, each having run its notebook up to ``wait_for_page()``."""
    if cull_idle_timeout < 0 or cull_interval < 0:
        raise ValueError(
            f"cull_idle_timeout ({cull_idle_timeout}) and cull_interval ({cull_interval}) "
            "must be 0 or more seconds"
        )
    command = [
        sys.executable,
        "-m",
        # Voila with the run log's retention loop in the same process.
        "consortium_lab.apps.voila_server",
        str(root or notebooks_dir()),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        f"--Voila.base_url={base_url}",
        f"--template={TEMPLATE}",
        f"--theme={theme}",
        "--VoilaConfiguration.show_tracebacks=True",
        # jupyter-server-proxy (the hub extra) ships a lab extension that fails to load in a
        # Voila page and says so in the console; a chat page never needs it.
        f"--VoilaConfiguration.extension_denylist={PROXY_EXTENSION}",
        # The kernel talks to Voila over Unix sockets: over TCP it warns (unencrypted) on start.
        "--KernelManager.transport=ipc",
    ]
    if side_files:
        settings = voila_settings(pool_size if preheat else 0, dashboard_pool_size)
        command += [*trust_notebooks(root or notebooks_dir()), *config_file_options(settings)]
    if cull_idle_timeout > 0:
        command += [
            f"--MappingKernelManager.cull_idle_timeout={cull_idle_timeout}",
            f"--MappingKernelManager.cull_interval={max(1, cull_interval or CULL_INTERVAL)}",
            # A page's websocket counts as activity, so a kernel with an open page is kept.
            "--MappingKernelManager.cull_connected=False",
        ]
    if preheat and pool_size > 0:
        command += [
            "--preheat_kernel=True",
            f"--pool_size={pool_size}",
            f"--VoilaKernelManager.fill_delay={POOL_FILL_DELAY}",
        ]
    return command


def voila_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for Voila: ``JUPYTER_PATH`` gains the consortium template, and its
    kernels are marked as chat kernels (``CONSORTIUM_LAB_CHAT_KERNEL=1``: lighter imports)
    whose widgets load their bundle from the template (``$CONSORTIUM_LAB_WIDGET_ASSETS``)."""
    out = dict(os.environ if env is None else env)
    out.setdefault("CONSORTIUM_LAB_CHAT_KERNEL", "1")
    # Voila serves the consortium template's static files: the widgets import their bundle
    # from there (see consortium_lab.widget.assets).
    out.setdefault(SERVED_ENV, "voila-template")
    paths = [str(jupyter_data_dir())]
    if out.get("JUPYTER_PATH"):
        paths.append(out["JUPYTER_PATH"])
    out["JUPYTER_PATH"] = os.pathsep.join(paths)
    no_proxy = "127.0.0.1,localhost,::1"
    for name in ("NO_PROXY", "no_proxy"):
        out[name] = f"{out[name]},{no_proxy}" if out.get(name) else no_proxy
    return out


def chat_url(port: int, base_url: str = "/") -> str:
    return f"http://127.0.0.1:{port}{base_url}voila/render/{LANDING}"


def dashboard_url(port: int, base_url: str = "/") -> str:
    return f"http://127.0.0.1:{port}{base_url}voila/render/{DASHBOARD}"


def wait_until_serving(
    url: str, proc: subprocess.Popen[Any] | None = None, timeout: float = 60.0
) -> None:
    """Wait until ``url`` answers (raises ``TimeoutError``, or ``RuntimeError`` if ``proc``
    exits first)."""
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"voila exited with status {proc.returncode}")
        try:
            with opener.open(url, timeout=5) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def running(
    port: int | None = None,
    *,
    env: Mapping[str, str] | None = None,
    preheat: bool = True,
    pool_size: int = 1,
    theme: str = "light",
    root: Path | None = None,
    log: Any = None,
    timeout: float = 90.0,
    cull_idle_timeout: int = CULL_IDLE_TIMEOUT,
    cull_interval: int = CULL_INTERVAL,
) -> Iterator[tuple[subprocess.Popen[Any], str]]:
    """Run Voila for the duration of a ``with`` block; yields ``(process, base URL)``."""
    port = port or free_port()
    proc = subprocess.Popen(
        voila_command(
            port,
            root=root,
            preheat=preheat,
            pool_size=pool_size,
            theme=theme,
            cull_idle_timeout=cull_idle_timeout,
            cull_interval=cull_interval,
        ),
        env=voila_env(env),
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/voila/tree", proc, timeout)
        yield proc, f"http://127.0.0.1:{port}/"
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop Voila and its kernels (its own process group)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def serve(port: int | None = None, *, preheat: bool = True, open_browser: bool = False) -> int:
    """Serve the chat app until interrupted (``consortium-lab demo``); returns an exit code."""
    import webbrowser

    port = port or free_port()
    proc = subprocess.Popen(
        voila_command(port, preheat=preheat),
        env=voila_env(),
        start_new_session=True,
    )
    # Voila runs in its own session (so a Ctrl+C reaches us once, not it and its kernels
    # twice); a SIGTERM or SIGHUP to us must therefore unwind through `finally` to stop its
    # whole process group, instead of ending this process and leaving Voila serving.
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/voila/tree", proc, 120)
        print(f"Consortium chat: {chat_url(port)}", flush=True)
        print(f"Your dashboard:  {dashboard_url(port)}", flush=True)
        print("Press Ctrl+C to stop.", flush=True)
        if open_browser:
            webbrowser.open(chat_url(port))
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


# -- helpers for the notebooks --------------------------------------------------------------------


def provider_key_set() -> bool:
    """True when some model other than the offline demo ones is usable (a key is set or the
    model needs none, as local models do)."""
    from consortium_lab.config.catalog import list_models

    return any(not m.is_demo for m in list_models())


def chat_widget(**kwargs: Any) -> ChatWidget | Any:
    """The chat: the last conversation of the run log, else a new one, with the offline demo
    models when no provider key is set (``demo=False`` in ``kwargs`` turns that off).

    In a hub (``$CONSORTIUM_LAB_GATEWAY_URL`` set) the chat of
    :func:`~consortium_lab.apps.hub_chat.hub_chat` instead: the gateway's models only."""
    from consortium_lab.apps.hub_chat import gateway_url, hub_chat
    from consortium_lab.widget.chat import ChatWidget
    from consortium_lab.widget.settings import demo_config

    if gateway_url():
        return hub_chat(**kwargs)

    demo = kwargs.pop("demo", None)
    if demo is None:
        demo = not provider_key_set()
    if demo and "config" not in kwargs and "consortium" not in kwargs:
        kwargs["config"] = demo_config()
    return ChatWidget(**kwargs)


def dashboard(path: str | Path | None = None) -> Any:
    """Your personal dashboard from your run log: totals, usage charts (runs over time, models
    used, mean confidence, latency, tokens per model) and your saved combinations. Returns an
    ipywidgets ``VBox``; charts render with the bundled Vega (no CDN)."""
    import html

    import ipywidgets as widgets

    from consortium_lab import configs, runs
    from consortium_lab.analysis import dashboard as usage
    from consortium_lab.widget.vega import VegaChartGrid

    rows = runs.list(path=path)
    frame = runs.to_pandas(path=path)
    header = widgets.HTML("<h2>Your consortium dashboard</h2>")
    if not rows:
        return widgets.VBox(
            [header, widgets.HTML("<p>No runs yet: ask something in the chat first.</p>")]
        )
    done = [r for r in rows if r["final_confidence"] is not None]
    mean = sum(r["final_confidence"] for r in done) / len(done) if done else None
    conversations = len({r["conversation_id"] for r in rows})
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    stats = [
        ("runs", str(len(rows))),
        ("conversations", str(conversations)),
        ("mean final confidence", "-" if mean is None else f"{mean:.0%}"),
        ("models used", str(frame["model"].nunique() if len(frame) else 0)),
        ("member answers", str(len(frame))),
        ("by status", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))),
    ]
    cells = "".join(
        f"<div class='cl-stat'><b>{html.escape(v)}</b><br>{html.escape(k)}</div>" for k, v in stats
    )
    summary = widgets.HTML(
        "<div style='display:flex;flex-wrap:wrap;gap:1.5rem;margin:0.5rem 0'>" + cells + "</div>"
    )
    combos: dict[str, int] = {}
    for r in rows:
        models = (r.get("config") or {}).get("models") or {}
        key = ", ".join(f"{m}:{n}" if n > 1 else m for m, n in models.items())
        key += f" → {r.get('arbiter') or '(no arbiter)'}"
        combos[key] = combos.get(key, 0) + 1
    combo_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{n}</td></tr>"
        for k, n in sorted(combos.items(), key=lambda kv: -kv[1])
    )
    saved = configs.list()
    saved_rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            html.escape(s.name),
            html.escape(
                ", ".join(f"{m}:{n}" if n > 1 else m for m, n in s.config.models.items())
                if s.config
                else "invalid"
            ),
            html.escape(s.config.arbiter_model if s.config else (s.error or "")),
        )
        for s in saved
    )
    tables = widgets.HTML(
        "<h3>Combinations you ran</h3><table><tr><th>members → arbiter</th><th>runs</th></tr>"
        f"{combo_rows}</table>"
        "<h3>Saved combinations</h3>"
        + (
            f"<table><tr><th>name</th><th>members</th><th>arbiter</th></tr>{saved_rows}</table>"
            if saved
            else "<p>None saved yet (use the chat's settings).</p>"
        )
    )
    parts = [header, summary]
    if len(frame):
        # One chart per cell of the grid (not usage.usage_dashboard's single concatenated
        # spec, whose side-by-side charts share one colour scale): they wrap on narrow screens.
        builders = (
            usage.runs_over_time_chart,
            usage.models_used_chart,
            usage.confidence_by_model_chart,
            usage.latency_by_model_chart,
            usage.tokens_by_model_chart,
        )
        parts.append(VegaChartGrid([build(frame) for build in builders]))
    parts.append(tables)
    return widgets.VBox(parts)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - `python -m` entry
    import argparse

    parser = argparse.ArgumentParser(description="Serve the consortium chat with Voila.")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--no-preheat", action="store_true")
    args = parser.parse_args(argv)
    return serve(args.port, preheat=not args.no_preheat)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
