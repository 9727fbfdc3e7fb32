"""Fixtures of the end-to-end tests: a real standalone Voila serving notebooks/chat.ipynb, the
loopback OpenAI-compatible server for models, and Debian's Chromium driven by Playwright.

One Voila server, one model server and one browser per test module (starting them is the slow
part); each test gets a fresh browser context and registers its own model ids. Skipped, with
the reason, only when /usr/bin/chromium is missing (CI installs it: see .ci/run).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chromium import CHROMIUM, MISSING, launch_or_skip
from conftest import PROVIDER_ENV_VARS, FakeOpenAI, IsolatedHome

from fake_openai import FakeOpenAIServer

LOCAL_PREFIXES = ("http://127.0.0.1", "ws://127.0.0.1", "blob:", "data:", "about:")
XSS_HOOK = """
window.__xss_hits = [];
window.__xss = (...args) => { window.__xss_hits.push(String(args)); };
"""

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=MISSING)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(needs_chromium)
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test (Voila + Chromium)")


@pytest.fixture(scope="module")
def e2e_home(tmp_path_factory: pytest.TempPathFactory) -> IsolatedHome:
    return IsolatedHome.make(tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="module")
def models(e2e_home: IsolatedHome) -> Iterator[FakeOpenAI]:
    """The loopback model server, registered for llm in the module's LLM_USER_PATH."""
    server = FakeOpenAIServer(max_lifetime=900).start()
    try:
        yield FakeOpenAI(server, e2e_home)
    finally:
        server.stop()


def _env(fake: FakeOpenAI) -> dict[str, str]:
    env = fake.env()
    for name in [*PROVIDER_ENV_VARS, *(n for n in env if n.endswith("_API_KEY"))]:
        env.pop(name, None)
    env["CONSORTIUM_LAB_DEMO_DELAY"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class VoilaServer:
    base: str
    home: IsolatedHome
    log: Path
    proc: Any

    @property
    def chat(self) -> str:
        return self.base + "voila/render/chat.ipynb"

    @property
    def dashboard(self) -> str:
        return self.base + "voila/render/dashboard.ipynb"

    @property
    def run_log(self) -> Path:
        return self.home.consortium_home / "runs.db"


@pytest.fixture(scope="module")
def voila(models: FakeOpenAI, e2e_home: IsolatedHome) -> Iterator[VoilaServer]:
    """Standalone Voila (preheated chat kernel, as `consortium-lab demo` runs it) on
    127.0.0.1 with the module's environment; stopped at teardown."""
    pytest.importorskip("voila")
    from consortium_lab.apps import voila as app

    static = app.HERE / "static" / "widget.js"
    if not static.exists():
        pytest.fail("the widget bundle is not built: run `npm ci && npm run build` in widgets/")
    log = e2e_home.root / "voila.log"
    with (
        log.open("w") as out,
        app.running(env=_env(models), preheat=True, log=out, timeout=120) as (proc, base),
    ):
        yield VoilaServer(base=base, home=e2e_home, log=log, proc=proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_or_skip() as browser:
        yield browser


@dataclass
class Page:
    """A Playwright page with what it asked for from outside the machine and its JS errors."""

    page: Any
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.page, name)


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 1000}, accept_downloads=True, service_workers="block"
    )
    context.add_init_script(XSS_HOOK)
    raw = context.new_page()
    wrapped = Page(raw)

    def on_request(request: Any) -> None:
        if not request.url.startswith(LOCAL_PREFIXES):
            wrapped.outside.append(request.url)

    raw.on("request", on_request)
    raw.on("pageerror", lambda exc: wrapped.errors.append(str(exc)))
    raw.set_default_timeout(60_000)
    try:
        yield wrapped
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            # Leave what is needed to understand a failure: a screenshot and the server log.
            shot = tmp_path / "failure.png"
            raw.screenshot(path=str(shot), full_page=True)
            print(f"\nscreenshot of the failure: {shot}")
            if "voila" in request.fixturenames:
                log = request.getfixturevalue("voila").log
                print("voila log (tail):\n" + log.read_text()[-4000:])
    finally:
        context.close()
