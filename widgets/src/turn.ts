// One turn of the conversation: member panes, the synthesis, the iteration timeline, charts.

import { PromptEditor, turnControls } from "./actions";
import { LiveChart } from "./charts";
import { changed, h, pct, setAttr, setText } from "./dom";
import { MemberPane, SynthesisPane } from "./panes";
import { MemberTabs } from "./tabs";
import type { FrontendMessage } from "./messages.gen";
import type { IterationView, TurnView } from "./state";
import { VotePane } from "./vote";
import { WordClouds } from "./wordcloud";

const PROMPT_FOLD_LINES = 12;
const PROMPT_FOLD_CHARS = 1200;

/** "3 members · 2 iterations · 83% ≥ 80%": the answer's one-line status. */
export function answerStatus(v: TurnView, members: number): string {
  const parts = [`${members} member${members === 1 ? "" : "s"}`];
  parts.push(`${v.iterations.length} iteration${v.iterations.length === 1 ? "" : "s"}`);
  if (v.confidence !== null && v.mode === "vote") {
    parts.push(`${pct(v.confidence)} of the votes`);
  } else if (v.confidence !== null) {
    const met = v.threshold === null ? "" : v.confidence >= v.threshold ? ` ≥ ${pct(v.threshold)}` : ` < ${pct(v.threshold)}`;
    parts.push(`${pct(v.confidence)}${met}`);
  }
  if (v.status !== "completed" && v.status !== "running") parts.push(v.status);
  return parts.join(" · ");
}

export interface TurnActions {
  send(msg: FrontendMessage): void;
  specs(): Record<string, any>;
  /** True while a run is in progress (regenerate, retry and edit wait for it). */
  busy?(): boolean;
}

export class TurnComponent {
  readonly el: HTMLElement;
  private prompt: HTMLElement;
  private meta: HTMLElement;
  private timeline: HTMLElement;
  private iterationBox: HTMLElement;
  private members: HTMLElement;
  private reviews: HTMLDetailsElement;
  private reviewList: HTMLElement;
  private arbiterStream: HTMLElement;
  private arbiterText: HTMLPreElement;
  private synthesis: SynthesisPane;
  private vote = new VotePane();
  private chartsBox: HTMLElement;
  private answerStatus: HTMLElement;
  /** The answer (synthesis, arbiter stream, status line): what the page keeps in view. */
  answerEl!: HTMLElement;
  /** True once the shown iteration has its answer. */
  answered = false;
  private working: HTMLDetailsElement;
  private workingSummary: HTMLElement;
  private workingToggled = false; // the reader opened or folded it: leave it as they chose
  private promptFold: HTMLButtonElement;
  private words: WordClouds;
  private panes = new Map<string, MemberPane>();
  private tabs = new MemberTabs();
  private reviewPanes = new Map<string, MemberPane>();
  private charts: { chart: LiveChart; name: string }[] = [];
  private chartKey = "";
  private selected: number | null = null; // null: follow the latest iteration
  private view: TurnView | null = null;
  private deleteArmed = 0;
  private editor: PromptEditor;

  constructor(private actions: TurnActions) {
    this.editor = new PromptEditor((m) => this.actions.send(m), () => this.busy());
    this.prompt = h("div", { class: "cl-user-prompt" });
    this.meta = h("div", { class: "cl-turn-meta" });
    this.timeline = h("nav", { class: "cl-timeline", "aria-label": "Iterations" });
    this.members = h("div", { class: "cl-members" });
    this.reviewList = h("div", { class: "cl-members" });
    this.reviews = h(
      "details",
      { class: "cl-box cl-reviews", hidden: true },
      h("summary", { text: "Peer reviews" }),
      this.reviewList,
    );
    this.arbiterText = h("pre", { class: "cl-raw" });
    this.arbiterStream = h(
      "section",
      { class: "cl-arbiter-stream cl-contained", hidden: true, "aria-label": "Arbiter writing" },
      h("h4", { text: "The arbiter is writing…" }),
      this.arbiterText,
    );
    this.synthesis = new SynthesisPane();
    this.synthesis.el.hidden = true;
    this.answerStatus = h("p", { class: "cl-answer-status", role: "status" });
    // The answer (what the user asked for) comes first; the consortium's working follows,
    // folded once the answer is there.
    const answer = h(
      "section",
      { class: "cl-answer-box", "aria-label": "Answer" },
      this.timeline,
      this.arbiterStream,
      this.synthesis.el,
      this.vote.el,
      this.answerStatus,
    );
    this.answerEl = answer;
    this.iterationBox = h("div", { class: "cl-iteration" }, this.tabs.el, this.members, this.reviews);
    this.chartsBox = h("div", { class: "cl-charts" });
    this.words = new WordClouds(() => this.actions.specs());
    this.workingSummary = h("summary", { class: "cl-working-summary", text: "The consortium's working" });
    this.working = h(
      "details",
      { class: "cl-working", open: true },
      this.workingSummary,
      this.iterationBox,
      this.chartsBox,
      this.words.el,
    );
    this.working.addEventListener("toggle", () => {
      if (this.working.open !== this.autoOpen) this.workingToggled = true;
      this.mountCharts();
    });
    // The reader's click counts at once: a render before the (queued) toggle event would
    // otherwise fold the working again.
    this.workingSummary.addEventListener("click", () => (this.workingToggled = true));
    this.promptFold = h("button", { type: "button", class: "cl-btn cl-small cl-prompt-fold", hidden: true, text: "Show all" });
    this.promptFold.onclick = () => {
      const folded = this.prompt.dataset.folded === "true";
      this.prompt.dataset.folded = String(!folded);
      this.promptFold.textContent = folded ? "Show less" : "Show all";
    };
    this.el = h(
      "article",
      { class: "cl-turn" },
      h("header", { class: "cl-turn-head" }, this.prompt, this.promptFold, this.editor.button, this.editor.box, this.meta),
      answer,
      this.working,
    );
  }

  private autoOpen = true;

  private busy(): boolean {
    return this.actions.busy?.() ?? false;
  }

  update(v: TurnView): void {
    const prev = this.view;
    this.view = v;
    setAttr(this.el, "data-run-id", v.runId);
    setAttr(this.el, "data-status", v.status);
    if (!prev || prev.prompt !== v.prompt) {
      this.prompt.replaceChildren(h("span", { class: "cl-you", text: "You" }), h("p", { text: v.prompt }));
      const long = v.prompt.split("\n").length > PROMPT_FOLD_LINES || v.prompt.length > PROMPT_FOLD_CHARS;
      this.prompt.dataset.folded = String(long);
      this.promptFold.hidden = !long;
    }
    this.editor.bind(v);
    this.renderMeta(v);
    this.renderTimeline(v);
    const shown = this.shownIteration(v);
    if (shown) this.renderIteration(v, shown);
    this.renderWorking(v, shown);
    this.renderCharts(v);
    this.words.update(v.charts.words);
  }

  private renderMeta(v: TurnView): void {
    const last = v.iterations[v.iterations.length - 1];
    const parts = [
      `${v.mode}`,
      v.status === "running" && last ? `iteration ${last.number}…` : `${v.iterations.length} iteration(s)`,
      v.confidence !== null ? `confidence ${pct(v.confidence)}` : "",
      v.threshold !== null ? `threshold ${pct(v.threshold)}` : "",
    ].filter(Boolean);
    const sig = `${v.status}|${parts.join("|")}|${v.error ?? ""}|${v.warnings.join("|")}`;
    if (!changed(this.meta, sig)) return;
    const status = h("span", { class: `cl-badge cl-run-status cl-run-${v.status}`, text: v.status });
    const info = h("span", { class: "cl-run-info", text: parts.join(" · ") });
    const buttons = h("span", { class: "cl-turn-actions" });
    if (v.status !== "running") {
      const short = v.prompt.slice(0, 40);
      buttons.append(
        h("button", { type: "button", class: "cl-btn cl-small", "aria-label": `Export run "${short}" as JSON`, text: "JSON" }),
        h("button", { type: "button", class: "cl-btn cl-small", "aria-label": `Export run "${short}" as Markdown`, text: "Markdown" }),
        h("button", { type: "button", class: "cl-btn cl-small cl-danger", "aria-label": `Delete run "${short}"`, text: "Delete" }),
      );
      const [json, md, del] = Array.from(buttons.children) as HTMLButtonElement[];
      json.dataset.action = "export-json";
      md.dataset.action = "export-markdown";
      del.dataset.action = "delete";
      json.onclick = () => this.actions.send({ type: "export", id: v.runId, format: "json" });
      md.onclick = () => this.actions.send({ type: "export", id: v.runId, format: "markdown" });
      del.onclick = () => {
        if (Date.now() - this.deleteArmed < 4000) {
          this.actions.send({ type: "delete_run", id: v.runId });
        } else {
          this.deleteArmed = Date.now();
          del.textContent = "Confirm delete";
          setTimeout(() => (del.textContent = "Delete"), 4000);
        }
      };
      buttons.prepend(...turnControls(v, (m) => this.actions.send(m), () => this.busy()));
    }
    const children: Node[] = [status, info, buttons];
    if (v.error && v.status !== "completed") children.push(h("p", { class: "cl-run-error", text: v.error }));
    // On the turn itself, not only inside the synthesis's details: the answer shown may be
    // the arbiter's raw text.
    if (v.warnings.length) {
      status.textContent = "⚠ completed with warnings";
      children.push(h("p", { class: "cl-run-warnings", role: "status", text: `⚠ ${v.warnings.join("; ")}` }));
    }
    this.meta.replaceChildren(...children);
  }

  private shownIteration(v: TurnView): IterationView | undefined {
    if (this.selected !== null) {
      const it = v.iterations.find((x) => x.number === this.selected);
      if (it) return it;
    }
    return v.iterations[v.iterations.length - 1];
  }

  private renderTimeline(v: TurnView): void {
    const shown = this.shownIteration(v)?.number;
    const sig = `${v.iterations.map((i) => `${i.number}:${i.synthesis ? pct(i.synthesis.confidence) : ""}`).join(",")}|${shown}`;
    this.timeline.hidden = v.iterations.length < 2;
    if (!changed(this.timeline, sig)) return;
    const buttons = v.iterations.map((it) => {
      const b = h("button", {
        type: "button",
        class: "cl-btn cl-small",
        "aria-pressed": String(it.number === shown),
        "data-iteration": String(it.number),
        text: `Iteration ${it.number}${it.synthesis ? ` · ${pct(it.synthesis.confidence)}` : ""}`,
      });
      b.onclick = () => {
        const latest = v.iterations[v.iterations.length - 1]?.number;
        this.selected = it.number === latest ? null : it.number;
        if (this.view) this.update(this.view);
      };
      return b;
    });
    this.timeline.replaceChildren(h("span", { class: "cl-timeline-label", text: "Timeline:" }), ...buttons);
  }

  private renderIteration(v: TurnView, it: IterationView): void {
    setAttr(this.iterationBox, "data-iteration", String(it.number));
    // member panes, keyed by iteration and member
    const keep = new Set<string>();
    const order: HTMLElement[] = [];
    for (const m of it.members) {
      const id = `${it.number}|${m.key}`;
      keep.add(id);
      let pane = this.panes.get(id);
      if (!pane) {
        pane = new MemberPane(m);
        this.panes.set(id, pane);
      }
      pane.update(m);
      order.push(pane.el);
    }
    for (const [id, pane] of this.panes) {
      if (!keep.has(id)) {
        pane.el.remove();
        this.panes.delete(id);
      }
    }
    const current = Array.from(this.members.children);
    if (current.length !== order.length || order.some((el, i) => current[i] !== el)) {
      this.members.replaceChildren(...order);
    }
    setAttr(this.members, "data-count", String(order.length));
    this.tabs.update(it.members.map((m) => ({ key: m.key, label: `${m.model} #${m.instance}`, status: m.status })), order);
    // peer reviews (council mode)
    this.reviews.hidden = it.reviews.length === 0;
    const reviewEls: HTMLElement[] = [];
    for (const r of it.reviews) {
      const id = `${it.number}|${r.key}`;
      let pane = this.reviewPanes.get(id);
      if (!pane) {
        pane = new MemberPane(r);
        this.reviewPanes.set(id, pane);
      }
      pane.update(r);
      reviewEls.push(pane.el);
    }
    const currentReviews = Array.from(this.reviewList.children);
    if (currentReviews.length !== reviewEls.length || reviewEls.some((el, i) => currentReviews[i] !== el)) {
      this.reviewList.replaceChildren(...reviewEls);
    }
    // the arbiter while it writes, then its synthesis
    const writing = !it.synthesis && !!it.arbiterStream;
    this.arbiterStream.hidden = !writing;
    if (writing) {
      setText(this.arbiterStream.querySelector("h4")!, `${it.arbiterModel ?? "The arbiter"} is writing…`);
      setText(this.arbiterText, it.arbiterStream);
    }
    // vote mode: the tally stands where the arbiter's synthesis would
    const voted = v.mode === "vote";
    this.synthesis.el.hidden = !it.synthesis || voted;
    this.vote.el.hidden = !it.synthesis || !voted;
    if (it.synthesis) (voted ? this.vote : this.synthesis).update(it.synthesis);
  }

  /** The status line under the answer, and the working folded once the answer is there. */
  private renderWorking(v: TurnView, shown: IterationView | undefined): void {
    const members = shown?.members.length ?? 0;
    setText(this.answerStatus, answerStatus(v, members));
    this.answerStatus.hidden = !shown?.synthesis && v.status === "running";
    const answered = !!shown?.synthesis || (v.mode === "compare" && v.status !== "running");
    this.answered = answered || !!shown?.arbiterStream;
    const summary = `The consortium's working: ${members} member${members === 1 ? "" : "s"}, ${v.iterations.length} iteration${v.iterations.length === 1 ? "" : "s"}`;
    setText(this.workingSummary, summary);
    this.autoOpen = !answered || v.mode === "compare";
    if (!this.workingToggled && this.working.open !== this.autoOpen) this.working.open = this.autoOpen;
    setAttr(this.working, "data-auto", this.workingToggled ? "no" : "yes");
  }

  private renderCharts(v: TurnView): void {
    if (v.mode === "compare") {
      this.chartsBox.hidden = true;
      return;
    }
    const specs = this.actions.specs();
    const confidenceSpec = specs?.confidence?.[v.chartKey];
    if (!confidenceSpec) return;
    if (this.chartKey !== v.chartKey) {
      this.chartKey = v.chartKey;
      for (const c of this.charts) c.chart.dispose();
      this.charts = [
        { name: "confidence", chart: new LiveChart(confidenceSpec, "confidence", "append", "Synthesis confidence per iteration") },
        { name: "member_confidence", chart: new LiveChart(specs.member_confidence, "member_confidence", "append", "Member confidence per iteration") },
        { name: "consensus", chart: new LiveChart(specs.consensus, "consensus", "replace", "Consensus of the latest answers") },
      ];
      this.chartsBox.replaceChildren(...this.charts.map((c) => c.chart.el));
    }
    for (const c of this.charts) void c.chart.update(v.charts[c.name] ?? []);
    this.mountCharts();
  }

  /** Embed the charts once the working is open: a folded turn (every turn of a restored
   * conversation) draws none, so opening a page loads no vega until a chart is looked at.
   * Rows given before are kept and drawn then. */
  private mountCharts(): void {
    if (!this.working.open) return;
    for (const c of this.charts) void c.chart.mount();
  }

  dispose(): void {
    for (const c of this.charts) c.chart.dispose();
    this.words.dispose();
  }
}
