"""The guest clean-up: a hub-managed service that removes guests idle past their timeout.

Its token's scopes are filtered to group ``guests``, so it cannot see or remove anyone else;
the stock culler's ``--cull-users`` would remove every idle user and needs ``admin:users`` on
all. A guest with a running server is left to the idle culler first. Run by the hub as
``python -m consortium_hub.guests``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .auth import GUEST_PREFIX, GUESTS_GROUP
from .spawners import unix_name

log = logging.getLogger("consortium_hub.guests")


def api(method: str, path: str) -> Any:
    """Call the hub's REST API with this service's token."""
    request = urllib.request.Request(
        os.environ["JUPYTERHUB_API_URL"].rstrip("/") + path,
        method=method,
        headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None


def idle_guests(users: list[dict[str, Any]], timeout: float, now: datetime) -> list[str]:
    """Names of guests with no server, whose last activity is older than ``timeout`` s."""
    out = []
    for user in users:
        name = user["name"]
        if not name.startswith(GUEST_PREFIX) or GUESTS_GROUP not in user.get("groups", []):
            continue
        if user.get("servers"):
            continue
        last = user.get("last_activity") or user.get("created")
        if last is None:
            continue
        seen = datetime.fromisoformat(last.replace("Z", "+00:00"))
        if (now - seen).total_seconds() > timeout:
            out.append(name)
    return out


def remove_files(name: str) -> None:
    """A removed guest's home: the *try it* folder, or the isolated mode's Unix user."""
    if os.environ.get("CONSORTIUM_HUB_MODE") == "isolated":
        subprocess.run(["userdel", "--remove", unix_name(name)], capture_output=True)
    else:
        home = Path(os.environ["CONSORTIUM_HUB_DATA_DIR"]) / "homes" / name
        shutil.rmtree(home, ignore_errors=True)


def clean_once(timeout: float) -> list[str]:
    # The token sees group guests only (its scopes are filtered), so this lists guests.
    users = api("GET", "/users") or []
    removed = []
    for name in idle_guests(users, timeout, datetime.now(UTC)):
        api("DELETE", f"/users/{name}")
        remove_files(name)
        removed.append(name)
        log.info("removed idle guest %s", name)
    return removed


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[guest-cleanup] %(message)s")
    timeout = float(os.environ.get("CONSORTIUM_HUB_GUEST_TIMEOUT", "3600"))
    every = float(os.environ.get("CONSORTIUM_HUB_CULL_EVERY", "300"))
    while True:
        try:
            clean_once(timeout)
        except OSError as exc:
            # The hub restarting is no reason to stop; the next round tries again.
            log.warning("clean-up round failed: %s", exc)
        time.sleep(every)


if __name__ == "__main__":
    main()
