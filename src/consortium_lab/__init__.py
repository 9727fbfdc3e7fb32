"""consortium_lab: ask several language models at once and get one answer you can trust.

Quick start (in a notebook, with the offline demo models)::

    from consortium_lab import Consortium
    consortium = Consortium(models=["demo-analyst", "demo-optimist", "demo-skeptic"],
                            arbiter="demo-arbiter")
    result = await consortium.run("Why is the sky blue?")
    result            # rich display; result.to_dict(), result.to_pandas()
"""

from __future__ import annotations

import os as _os
import sys as _sys
from typing import Any

# (An embedded interpreter may have no sys.argv.)
if _os.environ.get("CONSORTIUM_LAB_CHAT_KERNEL") == "1" or [
    _os.path.basename(arg) for arg in getattr(_sys, "argv", [])[:2]
] == ["consortium-lab", "gateway"]:
    # A chat kernel (set by the Voila launcher) and the gateway service (`consortium-lab
    # gateway`, however it is launched; this runs before the CLI can) run no user code:
    # sqlite_utils, which llm imports, is imported without the pandas and numpy it never
    # needs there (~46 MB).
    from consortium_lab.sqlite import import_sqlite_utils_without_pandas

    import_sqlite_utils_without_pandas()

from consortium_lab import configs, runs
from consortium_lab.apps.connect import connect
from consortium_lab.config.consortium import ConsortiumConfig, Limits
from consortium_lab.engine.consortium import Consortium, Conversation, Run
from consortium_lab.engine.events import SCHEMA_VERSION, Event, parse_event
from consortium_lab.engine.plugins import pm as _plugins
from consortium_lab.engine.result import RunResult
from consortium_lab.gateway.core import Gateway
from consortium_lab.prompts.parsing import (
    ArbiterParse,
    parse_arbiter_response,
    parse_member_response,
)
from consortium_lab.recommender.advice import recommend
from consortium_lab.sinks.runlog import plugin as _runlog_plugin

# The engine opens its default run log through a hook; the run log answers it (imports go down
# the layers: the engine never imports the sinks).
if not _plugins.is_registered(_runlog_plugin):
    _plugins.register(_runlog_plugin, name="consortium_lab.runlog")

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The widget needs the [widget] extra (anywidget, ipywidgets): imported on first use only.
    if name == "ChatWidget":
        from consortium_lab.widget.chat import ChatWidget

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
    "recommend",
    "runs",
]
