"""Model text made safe to paste into a Markdown report (``RunResult.to_markdown``).

Model text stays Markdown (lists, emphasis and code blocks still read as such), with two
changes so that one answer cannot take over the file:

- HTML is escaped outside fenced code blocks, so a ``<script>`` or ``<img onerror>`` from a
  model is shown as text by any renderer; inside a fence it is inert code and kept as written.
- A code fence the model opened and never closed is closed at the end of its text, so a stray
  ````` ``` ````` does not turn the rest of the report into a code block.
"""

from __future__ import annotations

import html
import re

# A CommonMark fence: up to three spaces, then three or more backticks or tildes.
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def safe_text(text: str) -> str:
    """``text`` with HTML escaped outside code fences and any unclosed fence closed."""
    out: list[str] = []
    open_fence: str | None = None
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if open_fence is None:
            if match and not (match["fence"][0] == "`" and "`" in match["info"]):
                open_fence = match["fence"]
                out.append(line)
            else:
                out.append(html.escape(line, quote=False))
        else:
            out.append(line)
            if (
                match
                and match["fence"][0] == open_fence[0]
                and len(match["fence"]) >= len(open_fence)
                and not match["info"].strip()
            ):
                open_fence = None
    if open_fence is not None:
        out.append(open_fence)
    return "\n".join(out)


def safe_line(text: str) -> str:
    """``text`` on one line (for a heading or an emphasised note), HTML escaped."""
    return html.escape(" ".join(text.split()), quote=False)
