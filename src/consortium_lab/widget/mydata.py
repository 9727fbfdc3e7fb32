"""“Download my data” and “Delete my data” in the chat: a user's rights over what it keeps.

``download_my_data`` is answered by a ``download`` of one JSON file,
:func:`consortium_lab.runs.export_all` (every run in the export shape, every saved config).

``delete_my_data {confirm: NAME}`` (NAME: the widget's ``user_name`` as the user typed it,
:func:`data_owner`) deletes every run of the run log (their rows in llm's log
too, both files vacuumed) and every saved config (:func:`consortium_lab.runs.delete_all`), then
shows a new, empty conversation. **A run in progress refuses it** (the page disables the button
meanwhile): stopping a run the user did not ask to stop would be a surprise, and a run still
writing would outlive the deletion. A run the run log still marks as running is kept (the
purge keeps those: another open chat of the same user may be running it); the answer says so.

In a hub the widget also has a ``delete_remote_data()`` method (see :class:`RemoteData`;
``apps/hub_chat.py``), called after the local deletion, which asks the gateway to delete what
it keeps (``DELETE /v1/me/data``); it runs in a thread, and a failure is shown, saying that the
local data is gone and that deleting again retries it.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from consortium_lab.widget import messages as msg
from consortium_lab.widget.settings import plain_error

if TYPE_CHECKING:
    from consortium_lab.widget.chat import ChatWidget

__all__ = ["MyData", "RemoteData", "data_owner", "deleted_text"]

logger = logging.getLogger(__name__)


@runtime_checkable
class RemoteData(Protocol):
    """A chat whose user also has data elsewhere (the hub's gateway) that deletion must reach."""

    def delete_remote_data(self) -> str:
        """Delete it; returns what was deleted, in words. Raises with a plain message on
        failure (never returns quietly when nothing was deleted)."""
        ...


def data_owner() -> str:
    """Whose data a chat holds: the hub user in a hub (``JUPYTERHUB_USER``), else the OS user
    (what "Delete my data" asks the user to type)."""
    hub_user = os.environ.get("JUPYTERHUB_USER")
    if hub_user:
        return hub_user
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # a container's uid without a passwd entry or $USER
        return str(os.getuid())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def deleted_text(runs: int, configs: int, kept: int = 0) -> str:
    """What a local deletion removed, in words: "Deleted 2 runs and 1 saved config.", and
    why ``kept`` runs (still marked running, which the purge keeps) are still there."""
    text = f"Deleted {_plural(runs, 'run')} and {_plural(configs, 'saved config')}."
    if kept:
        text += (
            f" Kept {_plural(kept, 'run')} still marked as running (another open chat may be"
            " running it, or it was cut off); delete again once none is running."
        )
    return text


def retention_state() -> dict[str, Any]:
    """The ``retention`` trait: ``max`` (the operator's days or ``None``), ``chosen`` (the
    user's or ``None``) and ``error`` (a malformed setting, named; ``""`` when none)."""
    from consortium_lab.sinks.runlog import chosen_retention_days, effective_retention_days

    state: dict[str, Any] = {"max": None, "chosen": None, "error": ""}
    try:
        state["max"] = effective_retention_days()
        state["chosen"] = chosen_retention_days()
    except ValueError as exc:
        state["error"] = str(exc)
    return state


def retention_text(state: dict[str, Any]) -> str:
    """What a retention state means, in words."""
    kept = [d for d in (state["max"], state["chosen"]) if d is not None]
    if not kept:
        return "Your runs are kept until you delete them."
    days = min(kept)
    return (
        f"Runs older than {_plural(days, 'day')} are deleted at the chat's next start and"
        " every 6 hours."
    )


class MyData:
    """Answers ``download_my_data`` and ``delete_my_data`` for one :class:`ChatWidget`."""

    def __init__(self, widget: ChatWidget, post: Callable[[msg.Notice], None]) -> None:
        self.widget = widget
        self._notice = post
        widget.retention = retention_state()

    def set_retention(self, m: msg.SetRetention) -> asyncio.Future[None]:
        """Store the user's retention choice and apply it at once: the runs it no longer keeps
        are purged right away (in a thread, then the past-runs list is refreshed), not at the
        chat server's next purge. Raises (shown as an error notice) for bad days, storing
        nothing; returns the purge's task, whose notice says what was deleted."""
        from consortium_lab.sinks.runlog import set_retention_days

        set_retention_days(m.days)
        state = self.widget.retention = retention_state()
        task = asyncio.ensure_future(self._apply_retention(retention_text(state), m.req))
        task.add_done_callback(_log)
        return task

    async def _apply_retention(self, text: str, req: msg.Req) -> None:
        from consortium_lab import runs

        try:
            report = await asyncio.to_thread(runs.purge_by_retention, **self._paths())
        except Exception as exc:
            self._notice(
                msg.Notice(
                    level="error",
                    message=f"Your choice is saved, but purging now failed: {plain_error(exc)}"
                    " It is tried again at the chat's next start and every 6 hours.",
                    req=req,
                )
            )
            raise
        if report is not None and report.runs:
            self.widget.refresh_past_runs()
            text += f" Deleted {_plural(report.runs, 'older run')} now."
        self._notice(msg.Notice(level="info", message=text, req=req))

    def _paths(self) -> dict[str, Any]:
        store = self.widget.store
        # Logging off: the user's data is still in the per-user run log, where runs() looks.
        return {"path": store.path if store is not None else None}

    def download(self, m: msg.DownloadMyData) -> None:
        """Post the user's data as one JSON file (a ``download``)."""
        from consortium_lab import runs

        data = runs.export_all(**self._paths())
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.widget._post(
            msg.Download(
                filename=f"consortium-my-data-{stamp}.json",
                mime="application/json",
                content=json.dumps(data, indent=2, ensure_ascii=False),
                req=m.req,
            )
        )

    def delete(self, m: msg.DeleteMyData) -> asyncio.Future[None] | None:
        """Delete the user's data here, show a new empty conversation, then (in a hub) at the
        gateway. Raises (shown as an error notice) when not confirmed or a run is in progress;
        returns the gateway step's task, if any."""
        from consortium_lab import configs, runs

        widget = self.widget
        if m.confirm != widget.user_name:
            raise ValueError(
                f"confirm: type your user name ({widget.user_name}) to delete all your data;"
                " nothing was deleted"
            )
        if widget.status != "idle":
            raise RuntimeError(
                "a run is in progress: stop it (or wait for it to finish), then delete your data"
            )
        saved = len(configs.list())
        report = runs.delete_all(**self._paths())
        kept = len(runs.list(**self._paths()))
        widget.new_chat()
        widget.refresh_past_runs()
        widget.refresh_saved_configs()
        local = deleted_text(report.runs, saved, kept)
        if not isinstance(widget, RemoteData):
            self._notice(msg.Notice(level="info", message=local, req=m.req))
            return None
        task = asyncio.ensure_future(self._delete_remote(widget, local, m.req))
        task.add_done_callback(_log)
        return task

    async def _delete_remote(self, remote: RemoteData, local: str, req: msg.Req) -> None:
        try:
            text = await asyncio.to_thread(remote.delete_remote_data)
        except Exception as exc:
            self._notice(
                msg.Notice(
                    level="error",
                    message=f"{local} But the gateway did not delete what it keeps for you: "
                    f"{plain_error(exc)} Delete your data again to retry.",
                    req=req,
                )
            )
            raise
        self._notice(msg.Notice(level="info", message=f"{local} {text}", req=req))


def _log(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("a data task failed: %r", task.exception())
