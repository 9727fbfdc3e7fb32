"""consortium_lab: ask several language models at once and get one answer you can trust.

Quick start (in a notebook, with the offline demo models)::

    from consortium_lab import Consortium
    consortium = Consortium(models=["demo-analyst", "demo-optimist", "demo-skeptic"],
                            arbiter="demo-arbiter")
    result = await consortium.run("Why is the sky blue?")
    result            # rich display; result.to_dict(), result.to_pandas()
"""

from __future__ import annotations

from typing import Any

from . import configs, runs
from .config import ConsortiumConfig, Limits
from .connect import connect
from .engine import Consortium, Conversation, Run
from .events import SCHEMA_VERSION, Event, parse_event
from .gateway import Gateway
from .parsing import ArbiterParse, parse_arbiter_response, parse_member_response
from .result import RunResult

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The widget needs the [widget] extra (anywidget, ipywidgets): imported on first use only.
    if name == "ChatWidget":
        from .widget import ChatWidget

        return ChatWidget
    raise AttributeError(f"module 'consortium_lab' has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION",
    "ArbiterParse",
    "ChatWidget",
    "Consortium",
    "ConsortiumConfig",
    "Conversation",
    "Event",
    "Gateway",
    "Limits",
    "Run",
    "RunResult",
    "__version__",
    "configs",
    "connect",
    "parse_arbiter_response",
    "parse_event",
    "parse_member_response",
    "runs",
]
