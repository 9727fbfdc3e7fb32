"""What the chat page's first load of the widget's front end costs: bytes and time.

The split bundle Voila serves (``consortium_lab.widget.assets.SERVED``, built by ``npm run
build``) is served from a loopback HTTP server; in each of N fresh Chromium contexts (empty
cache) a blank page links ``widget.css`` and ``import()``s ``widget.js`` as the widget's loader
does, and the time from the start to both loaded (the module and the chunks it imports
statically fetched, parsed and run; browser clock) is one sample. Also the bytes of that first
load: ``widget.js``, the chunks it imports statically (transitively) and ``widget.css``; what
it imports with ``import()`` (vega, KaTeX, highlight.js) is not part of it.

Run: ``.venv/bin/python benchmarks/bench_bundle.py`` (``--quick``: 7 samples, not 21). Side by
side with an earlier commit: ``.venv/bin/python benchmarks/compare.py --base REV bundle``.
Loopback only; the server and Chromium stop at the end.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import chromium  # noqa: E402
import figures  # noqa: E402
from consortium_lab.widget import assets  # noqa: E402
from static_site import BLANK_PAGE, serve_folder  # noqa: E402

LOAD = """async () => {
  const t0 = performance.now();
  const link = document.createElement("link");
  link.rel = "stylesheet";
  const css = new Promise((done, fail) => { link.onload = done; link.onerror = fail; });
  link.href = "/widget.css";
  document.head.append(link);
  const mod = await import("/widget.js");
  await css;
  if (typeof mod.default?.render !== "function") throw new Error("widget.js has no render");
  return performance.now() - t0;
}"""


def first_load_bytes(folder: Path) -> int:
    """``widget.js``, the chunks it imports statically (transitively) and ``widget.css``."""
    seen: set[str] = set()
    todo = ["widget.js"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        text = (folder / name).read_text(encoding="utf-8")
        todo += re.findall(r'(?:from|import)\s*"\./(chunk-[\w-]+\.js)"', text)
    return sum((folder / n).stat().st_size for n in seen) + (folder / "widget.css").stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="7 samples, not 21")
    args = parser.parse_args()
    folder = assets.SERVED
    if not (folder / "widget.js").is_file():
        sys.exit(f"bench_bundle: {folder} holds no widget.js (npm run build in widgets/)")
    samples: list[float] = []
    with serve_folder(folder) as base, chromium.launch() as browser:
        for _ in range(7 if args.quick else 21):
            context = browser.new_context()
            page = context.new_page()
            page.goto(base + BLANK_PAGE)
            samples.append(page.evaluate(LOAD))
            context.close()
    size = first_load_bytes(folder)
    median = statistics.median(samples)
    print(f"served from {folder}")
    print(f"first load (widget.js, its static chunks, widget.css): {size / 1000:.1f} KB")
    print(f"widget.css + widget.js loaded, median of {len(samples)}: {median:.1f} ms")
    print("samples: " + ", ".join(f"{s:.0f}" for s in samples))
    figures.record("widget first load (bytes)", size, "B")
    figures.record("widget first load (median)", median / 1000, "s")


if __name__ == "__main__":
    main()
