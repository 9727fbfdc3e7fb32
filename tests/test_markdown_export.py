"""The Markdown export: model HTML escaped, model code fences kept from swallowing the report,
members in the page's order. Rendered with markdown-it (CommonMark) to check what a reader sees."""

from __future__ import annotations

import pytest

from consortium_lab import Consortium
from consortium_lab.engine.markdown import safe_text

from fake_openai import ModelScript
from helpers import arbiter_reply, member_reply

markdown_it = pytest.importorskip("markdown_it")

SCRIPT = "<script>alert('x')</script>"
IMG = '<img src=x onerror="alert(1)">'


def render(text: str) -> str:
    return markdown_it.MarkdownIt("commonmark").render(text)


async def test_export_escapes_html_closes_fences_and_keeps_page_order(fake_openai):
    # zeta is listed first but answers last: the report follows the config, not the finish
    fake_openai.add_model(
        "zeta", ModelScript(reply=member_reply(f"Zeta says {SCRIPT} and\n```python\nx = 1", 0.7),
                            token_delay=0.05)
    )  # fmt: skip
    fake_openai.add_model("alpha", ModelScript(reply=member_reply(f"Alpha: {IMG}", 0.8)))
    fake_openai.add_model("judge", ModelScript(reply=arbiter_reply(f"Final {SCRIPT}.", 0.9)))
    result = await Consortium(models={"zeta": 1, "alpha": 1}, arbiter="judge", store=False).run(
        f"Why {SCRIPT}?"
    )
    assert [m.model for m in result.iterations[0].members] == ["alpha", "zeta"]  # finish order

    report = result.to_markdown()
    assert "<script" not in report and "<img" not in report
    assert "&lt;script&gt;" in report and "&lt;img" in report
    assert report.index("### zeta #1") < report.index("### alpha #1")

    html = render(report)
    assert "<script" not in html and "<img" not in html
    # the stray fence stays inside zeta's section: alpha's heading is still a heading
    assert "<h3>alpha #1</h3>" in html
    assert '<code class="language-python">x = 1\n</code>' in html


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain <b>bold</b> & more", "plain &lt;b&gt;bold&lt;/b&gt; &amp; more"),
        ("```\n<b>kept in code</b>\n```\n<i>", "```\n<b>kept in code</b>\n```\n&lt;i&gt;"),
        ("````\n```\nstill code\n", "````\n```\nstill code\n\n````"),
        ("~~~ sh\nls\n", "~~~ sh\nls\n\n~~~"),
        ("a ``` inline fence is text", "a ``` inline fence is text"),
        ("```js `bad info` \n<b>", "```js `bad info` \n&lt;b&gt;"),
    ],
)
def test_safe_text(text, expected):
    assert safe_text(text) == expected
