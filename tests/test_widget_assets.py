"""Where the widgets' front end comes from: the one-file bundle as text anywhere, the split
bundle by URL in a kernel of a page Voila serves through the consortium template."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from consortium_lab.widget import assets

CHILD = """
from consortium_lab.widget.chat import ChatWidget
from consortium_lab.widget.vega import VegaChartGrid
w = ChatWidget(store=False, restore=False)
g = VegaChartGrid([{"mark": "bar"}])
print(len(w._esm), len(g._esm))
print(w._esm.splitlines()[0])
"""


def built() -> bool:
    return all((assets.SERVED / f"{e}.js").is_file() for e in ("widget", "chart"))


def test_outside_voila_the_widget_carries_its_one_file_bundle(monkeypatch):
    monkeypatch.delenv(assets.SERVED_ENV, raising=False)
    esm, css = assets.bundle("widget")
    assert esm == assets.asset("widget.js") and css == assets.asset("widget.css")


@pytest.mark.skipif(not built(), reason="the widget bundle is not built")
def test_a_consortium_template_kernel_imports_the_served_bundle(monkeypatch):
    monkeypatch.setenv(assets.SERVED_ENV, "voila-template")
    esm, css = assets.bundle("widget")
    assert isinstance(esm, str) and css == ""
    assert len(esm) < 2000  # a loader, not the bundle
    assert 'new URL("widget.js?v=' in esm and 'new URL("widget.css?v=' in esm
    assert "templates/consortium/static/" in esm and "http" not in esm  # same origin only
    # a rebuilt bundle is a new URL: the version is the files' digest
    chart, _ = assets.bundle("chart")
    assert 'new URL("chart.js?v=' in str(chart)


@pytest.mark.skipif(not built(), reason="the widget bundle is not built")
def test_the_widget_classes_choose_at_import_from_the_kernel_environment(fake_openai):
    """ChatWidget and VegaChartGrid take the loader in a Voila kernel (voila_env sets the
    variable) and the bundle's text elsewhere."""
    from consortium_lab.apps import voila as app

    def run(env: dict[str, str]) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    plain = fake_openai.env()
    plain.pop(assets.SERVED_ENV, None)
    sizes, _first = run(plain)
    assert all(int(n) > 100_000 for n in sizes.split())
    sizes, first = run(app.voila_env(plain))
    assert all(int(n) < 2000 for n in sizes.split())
    assert first.startswith("// consortium_lab: the widget bundle, served by Voila")


def _static_imports(folder, name: str, seen: set[str]) -> set[str]:
    """``name`` and the chunks it imports statically, transitively (not its ``import()``s)."""
    seen.add(name)
    text = (folder / name).read_text(encoding="utf-8")
    for chunk in re.findall(r'(?:from|import)\s*"\./(chunk-[\w-]+\.js)"', text):
        if chunk not in seen:
            _static_imports(folder, chunk, seen)
    return seen


def test_the_served_widget_loads_katex_and_highlightjs_when_first_needed():
    if not built():
        pytest.skip("front-end bundle not built (npm run build in widgets/)")
    served = assets.SERVED
    first = _static_imports(served, "widget.js", set())
    first_text = "".join((served / name).read_text(encoding="utf-8") for name in first)
    # What a page runs at once holds neither KaTeX nor highlight.js...
    assert "KaTeX parse error" not in first_text
    assert "registerLanguage" not in first_text
    assert "KaTeX_" not in (served / "widget.css").read_text(encoding="utf-8")
    # ...which are chunks it imports when text needs them; KaTeX's CSS is a file of its own,
    # which the KaTeX chunk names, with its fonts beside it.
    lazy = set(re.findall(r'import\("\./(chunk-[\w-]+\.js)"\)', first_text))
    lazy_text = {name: (served / name).read_text(encoding="utf-8") for name in lazy}
    katex = [name for name, text in lazy_text.items() if "KaTeX parse error" in text]
    assert len(katex) == 1
    assert any("registerLanguage" in text for text in lazy_text.values())
    css_names = re.findall(r"katex-[\w-]+\.css", lazy_text[katex[0]])
    assert css_names and (served / css_names[0]).is_file()
    katex_css = (served / css_names[0]).read_text(encoding="utf-8")
    fonts = re.findall(r"url\(\"?\.?/?(KaTeX_Main-Regular-[\w-]+\.woff2)\"?\)", katex_css)
    assert fonts and (served / fonts[0]).is_file()
    # The one-file bundle (anywidget injects its widget.css) keeps KaTeX's CSS, fonts inlined.
    one_file_css = assets.STATIC / "widget.css"
    assert "KaTeX_Main" in one_file_css.read_text(encoding="utf-8")
    assert 'import("' not in (assets.STATIC / "widget.js").read_text(encoding="utf-8")
