"""A folder served over loopback HTTP with a blank page, for loading the widget's bundle in
Chromium without Voila (the one-file bundle's e2e test, ``benchmarks/bench_bundle.py``)."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BLANK_PAGE = "blank.html"
_BLANK = b"<!doctype html><title>bundle</title>"


class _Handler(SimpleHTTPRequestHandler):
    """The folder's files, and a blank page at ``/blank.html``; nothing cached, so every
    fresh browser context fetches the bundle again."""

    def do_GET(self) -> None:
        if self.path != "/" + BLANK_PAGE:
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(_BLANK)))
        self.end_headers()
        self.wfile.write(_BLANK)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 until the block ends; yields its base URL (ends with /)."""
    handler = functools.partial(_Handler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
