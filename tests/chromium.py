"""Debian's Chromium driven by Playwright's sync API: its path, its flags and the one way to
launch it, for the end-to-end and hub tests, the benchmarks and the docs screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
# Headless in a container: no sandbox or GPU there, and nothing may reach outside the machine.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MISSING = f"{CHROMIUM} is missing (apt-get install -y chromium; .ci/run does it)"


@contextmanager
def launch() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``), closed when the block ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def launch_or_skip() -> Iterator[Any]:
    """:func:`launch` for a test: skips it, with the reason, when Chromium or Playwright is
    missing."""
    import pytest

    if not CHROMIUM.exists():
        pytest.skip(MISSING)
    pytest.importorskip("playwright.sync_api")
    with launch() as browser:
        yield browser
