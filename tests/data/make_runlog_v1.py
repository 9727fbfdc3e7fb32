"""How ``runlog-v1.db`` was made: run log schema 1, by the code before the records (54aea97).

Kept so the fixture can be understood, not re-run: the file must stay as that release wrote it.
It was made with the release's own code and the offline demo models::

    CONSORTIUM_LAB_DEMO_DELAY=0 python tests/data/make_runlog_v1.py tests/data/runlog-v1.db
    sqlite3 tests/data/runlog-v1.db vacuum
"""

import asyncio
import sys
from pathlib import Path

from consortium_lab import Consortium
from consortium_lab.sinks.runlog import RunStore

out = Path(sys.argv[1])
out.unlink(missing_ok=True)


async def main() -> None:
    store = RunStore(out)
    c = Consortium(
        models=["demo-analyst", "demo-optimist:2"],
        arbiter="demo-arbiter",
        store=store,
        max_iterations=2,
        confidence_threshold=0.99,
    )
    chat = c.conversation()
    await chat.ask("Why is the sky blue?")
    await chat.ask("And at sunset?")
    council = Consortium(
        models=["demo-skeptic", "demo-analyst"], arbiter="demo-arbiter", mode="council", store=store
    )
    await council.run("Is tea better than coffee?")
    store.close()


asyncio.run(main())
