// The chat (ChatApp): the page's parts wired to the widget's model. Renders the engine's event
// stream; all orchestration stays in Python. The messages and the model's traits are typed by
// messages.gen.ts, generated from src/consortium_lab/widget/messages.py and the ChatWidget.

import { download, h, setAttr, setText, uid } from "./dom";
import { buildTurn, StreamStore, type Json, type StreamEvent } from "./state";
import { TurnComponent } from "./turn";
import { HighlightControl } from "./legend";
import { ThemeSwitch } from "./theme";
import { EstimateBox } from "./estimate";
import { RecommendBox } from "./recommend";
import { MyDataMenu } from "./mydata";
import { History } from "./history";
import { Settings } from "./settings";
import type { AnyModel } from "@anywidget/types";
import type { ChatModel, FrontendMessage, KernelMessage } from "./messages.gen";

export type Model = AnyModel<ChatModel>;
export type Send = (msg: FrontendMessage) => void;

export class ChatApp {
  readonly root: HTMLElement;
  private streams = new StreamStore();
  private turns = new Map<string, TurnComponent>();
  private turnViewCache = new WeakMap<object, ReturnType<typeof buildTurn>>();
  private conversation: HTMLElement;
  private empty: HTMLElement;
  private statusEl: HTMLElement;
  private errorEl: HTMLElement;
  private notices: HTMLElement;
  private promptInput: HTMLTextAreaElement;
  private sendBtn: HTMLButtonElement;
  private stopBtn: HTMLButtonElement;
  private estimate: EstimateBox;
  private recommend: RecommendBox;
  private mydata = new MyDataMenu((m) => this.send(m));
  private settings: Settings;
  private history: History;
  private theme: ThemeSwitch;
  private highlight: HighlightControl;
  private frame = 0;
  private disposed = false;
  private jumpBtn: HTMLButtonElement;
  /** Keep the newest text in view, until the reader scrolls up. */
  private following = true;
  private scrollBox: HTMLElement | null = null;
  private onScroll = () => this.updateFollowing();
  private onKey = (e: KeyboardEvent) => {
    const target = e.target as Node | null;
    const here = !!target && (this.root.contains(target) || target === this.root.ownerDocument.body);
    if (e.key === "Escape" && here && this.model.get("status") === "running") {
      e.preventDefault();
      this.send({ type: "cancel" });
    }
  };
  private autoScrollTop = -1; // where this page last scrolled itself to
  private lastScrollTop = 0;
  private lastTurn: TurnComponent | null = null;

  constructor(private model: Model) {
    this.statusEl = h("span", { class: "cl-status", role: "status", "aria-live": "polite" });
    const newChat = h("button", { type: "button", class: "cl-btn", "data-action": "new-chat", text: "New chat" });
    newChat.onclick = () => this.send({ type: "new_chat" });
    this.settings = new Settings(model, (m) => this.send(m));
    this.history = new History((m) => this.send(m));
    this.errorEl = h("div", { class: "cl-error", role: "alert", hidden: true });
    this.notices = h("div", { class: "cl-notices", "aria-live": "polite" });
    this.empty = h("p", {
      class: "cl-empty",
      text: "Ask something: every member answers live, then the arbiter synthesizes.",
    });
    this.conversation = h("div", { class: "cl-conversation", "aria-label": "Conversation" }, this.empty);
    const promptId = uid("cl-prompt");
    this.promptInput = h("textarea", {
      id: promptId,
      class: "cl-prompt-input",
      rows: 2,
      placeholder: "Ask the consortium… (Enter sends, Shift+Enter for a new line)",
    });
    this.sendBtn = h("button", { type: "submit", class: "cl-btn cl-primary", "data-action": "send", text: "Send" });
    this.stopBtn = h("button", { type: "button", class: "cl-btn cl-danger", "data-action": "stop", text: "Stop" });
    this.stopBtn.onclick = () => this.send({ type: "cancel" });
    this.estimate = new EstimateBox((m) => this.send(m), () => this.promptInput.value);
    this.sendBtn.setAttribute("aria-describedby", this.estimate.el.id);
    this.recommend = new RecommendBox((m) => this.send(m), () => this.promptInput.value, (models) =>
      this.send({ type: "set_config", config: { models }, merge: true }),
    );
    this.recommend.attach(this.promptInput, this.settings.el);
    this.settings.el.querySelector(".cl-models")?.append(this.recommend.el);
    this.promptInput.addEventListener("input", () => {
      this.estimate.schedule();
      this.sendBtn.disabled = this.model.get("status") !== "idle" || !this.promptInput.value.trim();
    });
    const form = h(
      "form",
      { class: "cl-prompt", "aria-label": "Prompt" },
      h("label", { for: promptId, class: "cl-sr-only", text: "Your prompt" }),
      this.promptInput,
      h("div", { class: "cl-prompt-buttons" }, this.sendBtn, this.stopBtn, this.estimate.el),
    );
    this.jumpBtn = h("button", { type: "button", class: "cl-btn cl-jump", "data-action": "jump", hidden: true, text: "↓ Jump to latest" });
    this.jumpBtn.onclick = () => {
      this.following = true;
      this.scrollToEnd();
    };
    form.prepend(this.jumpBtn);
    form.onsubmit = (e) => {
      e.preventDefault();
      this.submit();
    };
    this.promptInput.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.submit();
      }
    });
    const viewBar = h("span", { class: "cl-view-bar" });
    this.root = h(
      "div",
      { class: "cl-root" },
      h(
        "header",
        { class: "cl-header" },
        h("h2", { class: "cl-title", text: "Consortium chat" }),
        this.statusEl,
        h("span", { class: "cl-spacer" }),
        viewBar,
        newChat,
        this.mydata.el,
      ),
      this.settings.el,
      this.history.el,
      this.errorEl,
      this.conversation,
      form,
      this.notices,
    );

    this.theme = new ThemeSwitch(this.root);
    this.highlight = new HighlightControl(this.root);
    viewBar.append(this.highlight.el, this.theme.el);
    const rerender = () => this.schedule();
    const busy = () => this.mydata.setBusy(model.get("status") !== "idle");
    model.on("change:status", busy);
    busy();
    const owner = () => this.mydata.setUserName(String(model.get("user_name") ?? ""));
    model.on("change:user_name", owner);
    owner();
    const retention = () => this.mydata.setRetention(model.get("retention") ?? {});
    model.on("change:retention", retention);
    retention();
    for (const name of ["turns", "live_turn", "status", "error", "chart_specs"]) {
      model.on(`change:${name}`, rerender);
    }
    model.on("change:config", () => {
      this.settings.render();
      this.estimate.schedule();
    });
    model.on("change:models", () => this.settings.render());
    model.on("change:saved_configs", () => this.settings.render());
    model.on("change:past_runs", () => this.history.render(model.get("past_runs")));
    model.on("msg:custom", (msg: KernelMessage) => this.onMessage(msg));
  }

  start(): void {
    this.settings.render();
    this.history.render(this.model.get("past_runs"));
    this.render();
    this.send({ type: "ready" });
    // Escape stops a run (as Stop does), from the chat or the page around it; listened to on
    // the document while capturing, since the page's own shortcuts (Lumino) may stop it first.
    this.root.ownerDocument.addEventListener("keydown", this.onKey, true);
    this.estimate.schedule();
  }

  send(msg: FrontendMessage): void {
    this.model.send(msg);
  }

  private submit(): void {
    const prompt = this.promptInput.value;
    if (!prompt.trim() || this.model.get("status") !== "idle") return;
    this.send({ type: "ask", prompt });
    this.promptInput.value = "";
    this.sendBtn.disabled = true;
    this.following = true; // the reader just asked: show the answer as it comes
    this.estimate.schedule();
  }

  onMessage(msg: KernelMessage): void {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "events") {
      this.streams.apply(msg.events as unknown as StreamEvent[]);
      this.root.dataset.messages = String(this.streams.messages);
      this.root.dataset.deltas = String(this.streams.deltas);
      this.schedule();
    } else if (msg.type === "snapshot") {
      this.streams.snapshot(msg.run_id, msg.streams ?? []);
      this.schedule();
    } else if (msg.type === "ready") {
      // The kernel answers after it has set what it restored (traits come before this
      // message), but that render waits for the next frame: draw it now, so a page that is
      // "ready" already shows its conversation (what a reader, or a test counting turns, sees).
      this.render();
      this.root.dataset.ready = "true";
    } else if (msg.type === "download") {
      download(msg.filename, msg.mime, msg.content);
    } else if (msg.type === "estimate") {
      this.estimate.onReply(msg);
    } else if (msg.type === "recommendation") {
      this.recommend.onReply(msg);
    } else if (msg.type === "notice") {
      // a refused settings edit is shown at its field instead
      if (!this.settings.onNotice(msg) && !this.mydata.onNotice(msg)) this.notice(msg.level, msg.message);
    }
  }

  private notice(level: string, message: string): void {
    const el = h("div", { class: `cl-notice cl-notice-${level}`, text: message });
    this.notices.append(el);
    setTimeout(() => el.remove(), level === "error" ? 10000 : 5000);
  }

  schedule(): void {
    if (this.frame || this.disposed) return;
    const run = () => {
      this.frame = 0;
      this.render();
    };
    const view = this.root.ownerDocument?.defaultView;
    if (view?.requestAnimationFrame && !this.root.ownerDocument.hidden) {
      this.frame = view.requestAnimationFrame(run);
    } else {
      this.frame = setTimeout(run, 50) as unknown as number;
    }
  }

  render(): void {
    if (this.disposed) return;
    const status: string = this.model.get("status") ?? "idle";
    const turns: Json[] = this.model.get("turns") ?? [];
    const live: Json = this.model.get("live_turn") ?? {};
    setAttr(this.root, "data-status", status);
    setText(this.statusEl, status === "idle" ? "" : status === "running" ? "Running…" : "Stopping…");
    this.stopBtn.disabled = status !== "running";
    const error: string = this.model.get("error") ?? "";
    this.errorEl.hidden = !error;
    setText(this.errorEl, error);

    const views = turns.map((t) => {
      let v = this.turnViewCache.get(t);
      if (!v) {
        v = buildTurn(t, this.streams, false);
        this.turnViewCache.set(t, v);
      }
      return v;
    });
    const liveId = live?.ui?.run_id;
    if (liveId && !views.some((v) => v.runId === liveId)) views.push(buildTurn(live, this.streams, true));
    this.empty.hidden = views.length > 0;
    const keep = new Set(views.map((v) => v.runId));
    for (const [id, comp] of this.turns) {
      if (!keep.has(id)) {
        comp.dispose();
        comp.el.remove();
        this.turns.delete(id);
      }
    }
    let previous: Element = this.empty;
    for (const v of views) {
      let comp = this.turns.get(v.runId);
      if (!comp) {
        comp = new TurnComponent({
          send: (m) => this.send(m),
          specs: () => this.model.get("chart_specs"),
          busy: () => this.model.get("status") !== "idle",
        });
        this.turns.set(v.runId, comp);
      }
      if (previous.nextElementSibling !== comp.el) previous.after(comp.el);
      comp.update(v);
      previous = comp.el;
      this.lastTurn = comp;
    }
    if (!views.length) this.lastTurn = null;
    this.streams.retain(new Set([...keep]));
    this.sendBtn.disabled = status !== "idle" || !this.promptInput.value.trim();
    if (this.following) this.scrollToEnd();
    this.jumpBtn.hidden = this.following;
  }

  /** The element that scrolls the page around the widget (Voila's panel, a notebook, or the
   * document), found on first use and watched for the reader scrolling up. */
  private scroller(): HTMLElement | null {
    const doc = this.root.ownerDocument;
    // The document is only the fallback: asked before the widget is attached, or before the
    // page's own styles give its panel `overflow: auto`, the walk finds no panel, and keeping
    // the document then would scroll a page that does not scroll for the rest of its life.
    if (this.scrollBox?.isConnected && this.scrollBox !== doc.scrollingElement) return this.scrollBox;
    let el = this.root.parentElement;
    while (el && el !== doc.body && el !== doc.documentElement) {
      const y = doc.defaultView?.getComputedStyle(el).overflowY ?? "";
      if (y === "auto" || y === "scroll") break;
      el = el.parentElement;
    }
    const box = el && el !== doc.body && el !== doc.documentElement ? el : (doc.scrollingElement as HTMLElement | null);
    if (box !== this.scrollBox) {
      this.scrollTarget()?.removeEventListener("scroll", this.onScroll);
      this.scrollBox = box;
      this.scrollTarget()?.addEventListener("scroll", this.onScroll, { passive: true });
    }
    return box;
  }

  private scrollTarget(): EventTarget | null {
    const box = this.scrollBox;
    if (!box) return null;
    return box === this.root.ownerDocument.scrollingElement ? this.root.ownerDocument : box;
  }

  private updateFollowing(): void {
    const box = this.scrollBox;
    if (!box) return;
    // Within a few lines of the end counts as at the end (momentum, rounding, a growing pane);
    // so does where this page scrolled itself (the top of a long answer).
    // Only a move up stops following: the browser's own scroll anchoring, as content grows,
    // moves the page too, and must not count as the reader leaving.
    const top = box.scrollTop;
    if (box.scrollHeight - top - box.clientHeight < 80 || Math.abs(top - this.autoScrollTop) < 4) {
      this.following = true;
    } else if (top < this.lastScrollTop - 2) {
      this.following = false;
    }
    this.lastScrollTop = top;
    this.jumpBtn.hidden = this.following;
  }

  /** Scroll to the newest text, but never past the top of the last answer: once the arbiter
   * speaks, its answer's first lines stay in view however long the rest is. */
  private scrollToEnd(): void {
    const box = this.scroller();
    if (!box) return;
    let target = box.scrollHeight - box.clientHeight;
    const turn = this.lastTurn;
    if (turn?.answered) {
      const top = box.scrollTop + turn.answerEl.getBoundingClientRect().top - box.getBoundingClientRect().top;
      target = Math.min(target, Math.max(0, top - 8));
    }
    if (Math.abs(box.scrollTop - target) >= 1) {
      this.autoScrollTop = Math.round(target);
      box.scrollTop = target;
      this.autoScrollTop = box.scrollTop;
    }
    this.jumpBtn.hidden = true;
  }

  dispose(): void {
    this.disposed = true;
    this.scrollTarget()?.removeEventListener("scroll", this.onScroll);
    this.root.ownerDocument.removeEventListener("keydown", this.onKey, true);
    for (const comp of this.turns.values()) comp.dispose();
    this.estimate.dispose();
    this.recommend.dispose();
    this.theme.dispose();
  }
}
