// consortium_lab ChatWidget front end (anywidget). Renders the engine's event stream; all
// orchestration stays in Python. The messages and the model's traits are typed by
// messages.gen.ts, generated from src/consortium_lab/widget/messages.py and the ChatWidget.

import "./styles.css";
import "./view.css";
import { changed, field, h, pct, setAttr, setText, uid } from "./dom";
import {
  buildTurn,
  formatModelSpec,
  StreamStore,
  type Json,
  type StreamEvent,
} from "./state";
import { TurnComponent } from "./turn";
import { HighlightControl } from "./legend";
import { ThemeSwitch } from "./theme";
import { EstimateBox } from "./estimate";
import { RecommendBox } from "./recommend";
import { MyDataMenu } from "./mydata";
import { MemberSettings, OptionsField } from "./memberSettings";
import { settingsFields, type SettingsFields } from "./settingsFields";
import type { AnyModel, RenderProps } from "@anywidget/types";
import type { ChatModel, FrontendMessage, KernelMessage } from "./messages.gen";

export type Model = AnyModel<ChatModel>;
type Send = (msg: FrontendMessage) => void;

const MODES = [
  ["consortium", "consortium — an arbiter synthesizes"],
  ["council", "council — peer ranking, then a chairman"],
  ["compare", "compare — members side by side"],
  ["vote", "vote — the most frequent answer wins, no arbiter"],
];

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
    if (this.scrollBox?.isConnected) return this.scrollBox;
    const doc = this.root.ownerDocument;
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

function download(filename: string, mime: string, content: string): void {
  const blob = new Blob([content], { type: mime });
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// -- settings ---------------------------------------------------------------------------------

class Settings {
  readonly el: HTMLDetailsElement;
  private summary: HTMLElement;
  private search: HTMLInputElement;
  private list: HTMLUListElement;
  private spec: HTMLInputElement;
  private summaryText: HTMLElement;
  private checked: SettingsFields;
  private arbiter: HTMLSelectElement;
  private mode: HTMLSelectElement;
  private threshold: HTMLInputElement;
  private minIt: HTMLInputElement;
  private maxIt: HTMLInputElement;
  private system: HTMLTextAreaElement;
  private streamToggle: HTMLInputElement;
  private saved: HTMLSelectElement;
  private saveName: HTMLInputElement;
  private members: MemberSettings;
  private arbiterOptions: OptionsField;
  /** set_config requests whose refusal (an error notice with their req) is shown inline. */
  private refusals = new Map<string, (message: string) => void>();
  private reqSeq = 0;

  constructor(
    private model: Model,
    private send: Send,
  ) {
    this.summaryText = h("span", { class: "cl-settings-summary-text" });
    this.summary = h("summary", { class: "cl-settings-summary" }, this.summaryText);
    this.search = h("input", { type: "search", placeholder: "Search models", autocomplete: "off" });
    this.search.oninput = () => this.renderModels();
    this.list = h("ul", { class: "cl-model-list", "aria-label": "Models" });
    this.spec = h("input", { type: "text", autocomplete: "off", spellcheck: "false" });
    this.arbiter = h("select");
    this.arbiter.onchange = () => this.apply({ arbiter: this.arbiter.value || null });
    this.mode = h("select");
    for (const [value, label] of MODES) this.mode.append(h("option", { value, text: label }));
    this.mode.onchange = () => this.apply({ mode: this.mode.value });
    // Typed as text, checked here (validate.ts): a number input hides what was typed when
    // it is not a number, and the refusal must name it.
    this.threshold = h("input", { type: "text", inputmode: "decimal", autocomplete: "off", "data-setting": "confidence_threshold" });
    this.minIt = h("input", { type: "text", inputmode: "numeric", autocomplete: "off", "data-setting": "minimum_iterations" });
    this.maxIt = h("input", { type: "text", inputmode: "numeric", autocomplete: "off", "data-setting": "max_iterations" });
    this.spec.dataset.setting = "models";
    this.checked = settingsFields(
      { spec: this.spec, threshold: this.threshold, minIt: this.minIt, maxIt: this.maxIt },
      () => this.config(),
      () => (this.model.get("models") ?? []).map((m: Json) => m.id),
      (partial, refuse) => this.apply(partial, refuse),
    );
    this.system = h("textarea", { rows: 2, placeholder: "Instructions sent to every member" });
    this.system.onchange = () => this.apply({ system_prompt: this.system.value || null });
    this.streamToggle = h("input", { type: "checkbox" });
    this.streamToggle.onchange = () => this.apply({ stream_individual_responses: this.streamToggle.checked });
    const streamId = uid("cl-stream");
    this.streamToggle.id = streamId;
    this.members = new MemberSettings((partial, onRefused) => this.apply(partial, onRefused));
    this.arbiterOptions = new OptionsField("the arbiter", "Arbiter options (JSON)", (value, f) =>
      this.apply({ arbiter_options: value ?? {} }, (message) => f.showError(message)),
    );

    this.saved = h("select");
    this.saveName = h("input", { type: "text", placeholder: "name", autocomplete: "off" });
    const load = h("button", { type: "button", class: "cl-btn cl-small", text: "Load" });
    load.onclick = () => this.saved.value && this.send({ type: "load_config", name: this.saved.value });
    const remove = h("button", { type: "button", class: "cl-btn cl-small cl-danger", text: "Remove" });
    remove.onclick = () => this.saved.value && this.send({ type: "remove_config", name: this.saved.value });
    const save = h("button", { type: "button", class: "cl-btn cl-small", text: "Save current as" });
    save.onclick = () => this.saveName.value && this.send({ type: "save_config", name: this.saveName.value.trim() });
    const clone = h("button", { type: "button", class: "cl-btn cl-small", text: "Clone selected as" });
    clone.onclick = () =>
      this.saved.value &&
      this.saveName.value &&
      this.send({ type: "clone_config", source: this.saved.value, target: this.saveName.value.trim() });
    load.setAttribute("aria-label", "Load the selected saved configuration");
    remove.setAttribute("aria-label", "Remove the selected saved configuration");
    save.setAttribute("aria-label", "Save the current configuration under the name given");
    clone.setAttribute("aria-label", "Clone the selected saved configuration under the name given");

    this.el = h(
      "details",
      { class: "cl-settings cl-panel" },
      this.summary,
      h(
        "div",
        { class: "cl-settings-grid" },
        h(
          "fieldset",
          { class: "cl-models" },
          h("legend", { text: "Members" }),
          field("Search models", this.search),
          this.list,
          withError(field("Members (model:count, comma separated)", this.spec, "e.g. gpt-4o-mini:2, claude-3.5-haiku"), this.checked.spec.error),
        ),
        h(
          "fieldset",
          { class: "cl-options" },
          h("legend", { text: "Arbiter and iterations" }),
          field("Arbiter", this.arbiter),
          this.arbiterOptions.el,
          field("Mode", this.mode),
          withError(field("Confidence threshold (0–1)", this.threshold), this.checked.threshold.error),
          withError(field("Minimum iterations", this.minIt), this.checked.minIt.error),
          withError(field("Maximum iterations", this.maxIt), this.checked.maxIt.error),
          field("System prompt", this.system),
          h(
            "div",
            { class: "cl-field cl-check" },
            this.streamToggle,
            h("label", { for: streamId, text: "Stream each member's answer live" }),
          ),
        ),
        this.members.el,
        h(
          "fieldset",
          { class: "cl-saved" },
          h("legend", { text: "Saved configurations" }),
          field("Saved configuration", this.saved),
          h("div", { class: "cl-row" }, load, remove),
          field("Name for save / clone", this.saveName),
          h("div", { class: "cl-row" }, save, clone),
        ),
      ),
    );
  }

  private config(): Json {
    return this.model.get("config") ?? {};
  }

  private apply(partial: Json, onRefused?: (message: string) => void): void {
    // Only the fields changed: the kernel merges them into its config in arrival order.
    if (!onRefused) {
      this.send({ type: "set_config", config: partial, merge: true });
      return;
    }
    const req = `settings-${++this.reqSeq}`;
    this.refusals.set(req, onRefused);
    if (this.refusals.size > 50) this.refusals.delete(this.refusals.keys().next().value as string);
    this.send({ type: "set_config", config: partial, merge: true, req });
  }

  /** A notice from the kernel about a settings edit: a refusal is shown at its field.
   * Returns whether it was (the page then shows no other notice of it). */
  onNotice(msg: Json): boolean {
    const show = this.refusals.get(msg?.req);
    if (!show) return false;
    this.refusals.delete(msg.req);
    if (msg.level !== "error") return false;
    show(String(msg.message ?? "refused"));
    return true;
  }

  render(): void {
    const c = this.config();
    const members = formatModelSpec(c.models ?? {});
    const arbiter = c.mode === "compare" || c.mode === "vote" ? "no arbiter" : `arbiter ${c.arbiter ?? Object.keys(c.models ?? {})[0] ?? "?"}`;
    // One line, cut with an ellipsis; the whole of it on hover.
    const summary = `Settings — ${members} · ${arbiter} · ${c.mode ?? "consortium"}`;
    setText(this.summaryText, summary);
    setAttr(this.summary, "title", summary);
    const active = this.el.ownerDocument?.activeElement;
    const setValue = (el: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement, v: string) => {
      if (active !== el && el.value !== v) el.value = v;
    };
    this.checked.spec.set(c.models ?? {});
    const models: Json[] = this.model.get("models") ?? [];
    const arbiterOptions = [h("option", { value: "", text: "(first member)" })];
    for (const m of models) arbiterOptions.push(h("option", { value: m.id, text: m.label }));
    const sig = models.map((m) => m.id).join(",");
    if (changed(this.arbiter, sig)) {
      this.arbiter.replaceChildren(...arbiterOptions);
    }
    setValue(this.arbiter, c.arbiter ?? "");
    setValue(this.mode, c.mode ?? "consortium");
    this.checked.threshold.set(c.confidence_threshold ?? 0.8);
    this.checked.minIt.set(c.minimum_iterations ?? 1);
    this.checked.maxIt.set(c.max_iterations ?? 3);
    setValue(this.system, c.system_prompt ?? "");
    this.streamToggle.checked = c.stream_individual_responses !== false;
    this.arbiterOptions.set(c.arbiter_options);
    this.members.render(c);
    const saved: Json[] = this.model.get("saved_configs") ?? [];
    const savedSig = saved.map((s) => `${s.name}:${s.ok}`).join(",");
    if (changed(this.saved, savedSig)) {
      const current = this.saved.value;
      this.saved.replaceChildren(
        h("option", { value: "", text: saved.length ? "(choose)" : "(none saved)" }),
        ...saved.map((s) => h("option", { value: s.name, text: s.ok ? s.name : `${s.name} (invalid)` })),
      );
      this.saved.value = saved.some((s) => s.name === current) ? current : "";
    }
    this.renderModels();
  }

  private renderModels(): void {
    const c = this.config();
    const chosen: Record<string, number> = c.models ?? {};
    const models: Json[] = this.model.get("models") ?? [];
    const q = this.search.value.trim().toLowerCase();
    const shown = models.filter(
      (m) =>
        !q ||
        m.id.toLowerCase().includes(q) ||
        m.label.toLowerCase().includes(q) ||
        (m.aliases ?? []).some((a: string) => a.toLowerCase().includes(q)),
    );
    const sig = `${q}|${shown.map((m) => m.id).join(",")}|${JSON.stringify(chosen)}`;
    if (!changed(this.list, sig)) return;
    const rows = shown.map((m) => {
      const box = h("input", { type: "checkbox", id: uid("cl-model") });
      box.checked = m.id in chosen;
      box.dataset.model = m.id;
      const count = h("input", {
        type: "number",
        min: 1,
        max: 16,
        step: 1,
        class: "cl-count",
        "aria-label": `Instances of ${m.id}`,
      });
      count.value = String(chosen[m.id] ?? 1);
      count.disabled = !(m.id in chosen);
      const update = () => {
        const next: Record<string, number> = { ...(this.config().models ?? {}) };
        // (models is sent whole: merging happens per top-level field)
        if (box.checked) next[m.id] = Math.max(1, Math.floor(Number(count.value) || 1));
        else delete next[m.id];
        this.apply({ models: next });
      };
      box.onchange = update;
      count.onchange = update;
      return h(
        "li",
        { class: m.demo ? "cl-model cl-demo" : "cl-model" },
        box,
        h("label", { for: box.id, text: m.label }),
        count,
      );
    });
    if (!rows.length) rows.push(h("li", { class: "cl-empty", text: "No model matches." }));
    this.list.replaceChildren(...rows);
  }
}

function withError(wrap: HTMLElement, error: HTMLElement): HTMLElement {
  wrap.append(error);
  return wrap;
}

// -- past runs --------------------------------------------------------------------------------

class History {
  readonly el: HTMLDetailsElement;
  private list: HTMLUListElement;

  constructor(private send: Send) {
    this.list = h("ul", { class: "cl-history-list" });
    this.el = h(
      "details",
      { class: "cl-history cl-panel" },
      h("summary", { text: "Past runs" }),
      this.list,
    );
  }

  render(runs: Json[]): void {
    const rows = (runs ?? []).map((r) => {
      const short = (r.prompt ?? "").slice(0, 40);
      const open = h("button", { type: "button", class: "cl-btn cl-small", text: "Open", "aria-label": `Open the conversation of "${short}"` });
      open.onclick = () => this.send({ type: "open_run", id: r.id });
      const json = h("button", { type: "button", class: "cl-btn cl-small", text: "JSON", "aria-label": `Export "${short}" as JSON` });
      json.onclick = () => this.send({ type: "export", id: r.id, format: "json" });
      const md = h("button", { type: "button", class: "cl-btn cl-small", text: "Markdown", "aria-label": `Export "${short}" as Markdown` });
      md.onclick = () => this.send({ type: "export", id: r.id, format: "markdown" });
      const del = h("button", { type: "button", class: "cl-btn cl-small cl-danger", text: "Delete", "aria-label": `Delete "${short}"` });
      let armed = 0;
      del.onclick = () => {
        if (Date.now() - armed < 4000) this.send({ type: "delete_run", id: r.id });
        else {
          armed = Date.now();
          del.textContent = "Confirm delete";
        }
      };
      const when = (r.started_at ?? "").replace("T", " ").slice(0, 16);
      return h(
        "li",
        { class: "cl-history-item", "data-run-id": r.id },
        h("span", { class: "cl-history-prompt", text: r.prompt ?? "" }),
        h("span", {
          class: "cl-history-meta",
          text: `${when} · ${r.status} · ${pct(r.final_confidence)}`,
        }),
        h("span", { class: "cl-row" }, open, json, md, del),
      );
    });
    if (!rows.length) rows.push(h("li", { class: "cl-empty", text: "No runs yet." }));
    this.list.replaceChildren(...rows);
  }
}

// -- anywidget entry --------------------------------------------------------------------------

function render({ model, el }: Pick<RenderProps<ChatModel>, "model" | "el">): () => void {
  const app = new ChatApp(model);
  el.classList.add("cl-host");
  el.replaceChildren(app.root);
  app.start();
  return () => app.dispose();
}

// Only the default export: anywidget warns (in every page's console) that a named `render`
// export is deprecated.
export default { render };
