"""The chat server's process: standalone Voila with the run log's retention loop beside it.

``python -m consortium_lab.apps.voila_server ARGS`` is ``python -m voila ARGS`` plus a
:class:`~consortium_lab.apps.retention.RetentionLoop` on a daemon thread: the user's runs
older than ``effective_retention_days()`` go at server start and every 6 hours. Kernels are
separate processes, so the purge runs once per server, not once per page.
"""

from __future__ import annotations

import sys

from consortium_lab.apps.retention import RetentionLoop

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Start the retention loop, then run Voila's command line with ``argv``."""
    from voila.app import main as voila_main

    RetentionLoop().start()
    sys.argv = ["voila", *(sys.argv[1:] if argv is None else argv)]
    return int(voila_main() or 0)


if __name__ == "__main__":  # pragma: no cover - the server's entry
    sys.exit(main())
