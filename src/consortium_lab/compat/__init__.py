"""A drop-in for llm-consortium 0.8.0 that runs on our engine.

``create_consortium(...)`` and ``ConsortiumOrchestrator(config)`` take upstream's arguments;
``.orchestrate(prompt)`` returns upstream's result dict with upstream's types (floats where
upstream always gives a float), member ids its rankings refer to, and the seed export keys
added. Unlike upstream it streams and runs members concurrently; like upstream it blocks, asks
the models again on every call (no cache unless asked), checks models when it first calls them,
and records each run in upstream's own tables so ``llm consortium runs`` and ``run-info`` show
it. See docs/switching.md for what differs, and why.

``llm_consortium`` itself is imported only by :meth:`ConsortiumOrchestrator.get_embedding_service`
(which returns upstream's own service), so a kernel that never calls it never loads it.
"""

from __future__ import annotations

from consortium_lab.compat.orchestrator import (
    CompatOrchestrator,
    ConsortiumOrchestrator,
    create_consortium,
)
from consortium_lab.compat.result import to_upstream_dict

__all__ = [
    "CompatOrchestrator",
    "ConsortiumOrchestrator",
    "create_consortium",
    "to_upstream_dict",
]
