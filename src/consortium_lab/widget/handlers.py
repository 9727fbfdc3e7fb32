"""The chat widget's answers to the page's messages (:data:`~.messages.FrontendMessage`).

Each message is validated against the one schema first; a message that does not fit it, or a
request that fails, is answered with an error ``notice`` carrying the message's ``req``. No
handler blocks: a run starts as a task on the kernel's running event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from consortium_lab import configs as saved_configs_store
from consortium_lab.config.consortium import ConsortiumConfig
from consortium_lab.widget import messages as msg
from consortium_lab.widget.mydata import MyData
from consortium_lab.widget.recommending import PromptHints
from consortium_lab.widget.settings import (
    PER_MEMBER_FIELDS,
    check_member_keys,
    merge_per_member,
    plain_error,
)

if TYPE_CHECKING:
    from consortium_lab.widget.chat import ChatWidget

__all__ = ["FrontendHandlers", "friendly", "log_failure"]

logger = logging.getLogger(__name__)


def friendly(exc: BaseException) -> str:
    """An exception as one line for a person, in plain words (:func:`.settings.plain_error`)."""
    return plain_error(exc)


def log_failure(task: asyncio.Future[Any]) -> None:
    """Done-callback of background tasks: expected refusals are already shown to the user."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, (RuntimeError, ValueError)):
        logger.debug("chat widget task failed: %r", exc)


def _spawn(coro: Coroutine[Any, Any, Any]) -> None:
    asyncio.ensure_future(coro).add_done_callback(log_failure)


class FrontendHandlers:
    """Dispatches the page's messages to a :class:`~.chat.ChatWidget`."""

    def __init__(self, widget: ChatWidget) -> None:
        self.widget = widget
        self.hints = PromptHints(widget)
        self.mydata = MyData(widget, widget._post)
        self._table: dict[type[Any], Callable[[Any], object]] = {
            msg.Ready: lambda m: widget._on_ready(),
            msg.Ask: self._ask,
            msg.Cancel: lambda m: _spawn(widget.cancel()),
            msg.NewChat: lambda m: widget.new_chat(),
            msg.SetConfig: self._set_config,
            msg.SaveConfig: self._save_config,
            msg.LoadConfig: self._load_config,
            msg.CloneConfig: self._clone_config,
            msg.RemoveConfig: self._remove_config,
            msg.OpenRun: self._open_run,
            msg.Export: self._export,
            msg.DeleteRun: lambda m: widget.delete_run(m.id),
            msg.EstimateRequest: self._estimate,
            msg.RecommendRequest: self.hints.request,
            msg.Resend: self._resend,
            msg.DownloadMyData: self.mydata.download,
            msg.DeleteMyData: self.mydata.delete,
            msg.SetRetention: self.mydata.set_retention,
        }

    def handle(self, content: Any) -> None:
        """Handle one message from the page (ignored unless it is an object)."""
        if not isinstance(content, Mapping):
            return
        kind = content.get("type")
        req = content.get("req")
        if kind not in msg.FRONTEND_TYPES:
            self._notice("error", f"unknown message type {kind!r}", req)
            return
        try:
            message = msg.FRONTEND_MESSAGE.validate_python(content)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'][1:]) or kind}: {e['msg']}"
                for e in exc.errors()
            )
            self._notice("error", f"invalid {kind} message: {problems}", req)
            return
        try:
            self._table[type(message)](message)
        except Exception as exc:
            logger.debug("message %s failed", kind, exc_info=True)
            text = friendly(exc)
            # A settings-panel edit (merged, with a req) is refused at its field on the page;
            # the config in effect is unchanged, so nothing is wrong with the chat itself.
            inline = kind == "set_config" and content.get("merge") and req is not None
            if kind in ("set_config", "load_config") and not inline:
                self.widget.error = f"Invalid configuration: {text}"
            self._notice("error", text, req)

    def _notice(self, level: str, message: str, req: Any = None) -> None:
        self.widget._post(msg.Notice(level=level, message=message, req=req))

    def _ask(self, m: msg.Ask) -> None:
        self.widget._start(m.prompt).add_done_callback(log_failure)

    def _resend(self, m: msg.Resend) -> None:
        self.widget._resend(m.id, m.mode, m.prompt).add_done_callback(log_failure)
        # The page replaces the turn: say where the earlier one went.
        self._notice("info", "Asked again on a new branch; the earlier turn is kept.", m.req)

    def _set_config(self, m: msg.SetConfig) -> None:
        widget = self.widget
        config = dict(m.config)
        if m.merge:
            # Field edits from the settings panel: applied in order on the kernel's config, so
            # two quick edits never undo each other. Per-member settings merge per member.
            for name in PER_MEMBER_FIELDS:
                if name in config:
                    config[name] = merge_per_member(name, widget.config.get(name), config[name])
            config = {**widget.config, **config}
            for name in PER_MEMBER_FIELDS:
                if name in m.config:
                    check_member_keys(name, m.config[name], config.get("models"))
        widget.set_config(config)

    def _estimate(self, m: msg.EstimateRequest) -> None:
        # Sent as the user types: a failure is answered with an empty summary (the page
        # shows nothing), never with an error notice.
        try:
            est = self.widget.estimate(m.prompt)
        except Exception as exc:
            logger.debug("estimate failed", exc_info=True)
            reply = msg.EstimateReply(req=m.req, summary="", error=friendly(exc))
        else:
            reply = msg.EstimateReply(
                req=m.req,
                summary=est.summary,
                calls=est.calls,
                min_calls=est.min_calls,
                max_cost=est.max_cost,
                currency=est.currency,
                unpriced_models=list(est.unpriced_models),
            )
        self.widget._post(reply)

    def _save_config(self, m: msg.SaveConfig) -> None:
        if m.config is not None:
            self.widget.set_config(dict(m.config))
        saved_configs_store.save(m.name, ConsortiumConfig.model_validate(self.widget.config))
        self.widget.refresh_saved_configs()
        self._notice("info", f"Saved {m.name}", m.req)

    def _load_config(self, m: msg.LoadConfig) -> None:
        self.widget.set_config(saved_configs_store.get(m.name))
        self._notice("info", f"Loaded {m.name}", m.req)

    def _clone_config(self, m: msg.CloneConfig) -> None:
        saved_configs_store.clone(m.source, m.target)
        self.widget.refresh_saved_configs()
        self._notice("info", f"Cloned {m.source} as {m.target}", m.req)

    def _remove_config(self, m: msg.RemoveConfig) -> None:
        saved_configs_store.remove(m.name)
        self.widget.refresh_saved_configs()
        self._notice("info", f"Removed {m.name}", m.req)

    def _open_run(self, m: msg.OpenRun) -> None:
        widget = self.widget
        store = widget.store
        row = store.get_run_row(m.id) if store is not None else None
        if row is None:
            raise KeyError(f"no run with id {m.id!r} in the run log")
        if widget.status != "idle":
            raise RuntimeError("a run is in progress: stop it first")
        widget.open_conversation(row["conversation_id"])

    def _export(self, m: msg.Export) -> None:
        text = self.widget.export_run(m.id, m.format)
        ext, mime = ("json", "application/json") if m.format == "json" else ("md", "text/markdown")
        self.widget._post(
            msg.Download(
                filename=f"consortium-run-{m.id}.{ext}", mime=mime, content=text, req=m.req
            )
        )
