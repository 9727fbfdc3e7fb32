// The panes of a turn that hold model text: a member's answer (with its thinking and error),
// and the synthesis (with its analysis, dissent and refinement areas).

import { copyButton } from "./actions";
import { changed, h, pct, setAttr, setText } from "./dom";
import { highlightSpans } from "./highlight";
import { renderMarkdownInto } from "./sanitize";
import type { MemberView, SynthesisView } from "./state";

/** A block of model text rendered as sanitised markdown, re-rendered only when it changes. */
export class Markdown {
  readonly el: HTMLDivElement;
  private text: string | null = null;
  private spansKey = "";

  constructor(cls: string) {
    this.el = h("div", { class: `cl-md ${cls}` });
  }

  /** Show `text`, its `spans` (offsets into `raw`) marked. Returns what renderMarkdownInto
   * does: null when done, else a promise that settles once code or math, shown plain for now,
   * has been rendered again (and marked again). */
  set(text: string, spans: any[] | null = null, raw: string | null = null): Promise<boolean> | null {
    const spansKey = spans ? `${spans.length}:${spans[0]?.start}:${spans[spans.length - 1]?.end}` : "";
    if (text === this.text && spansKey === this.spansKey) return null;
    this.text = text;
    this.spansKey = spansKey;
    // Marked again when the text is rendered again (highlight.js or KaTeX has loaded).
    return renderMarkdownInto(this.el, text, () => {
      if (spans && spans.length) {
        const marked = highlightSpans(this.el, raw ?? text, spans);
        this.el.dataset.highlighted = String(marked);
      } else {
        delete this.el.dataset.highlighted;
      }
    });
  }
}

/** Where an answer came from, when not straight from its model: the cache, a fallback. */
function originBadges(v: { model: string; cached?: boolean; servedBy?: string | null }): HTMLElement[] {
  const out: HTMLElement[] = [];
  if (v.cached) out.push(h("span", { class: "cl-badge cl-cached", text: "cached" }));
  if (v.servedBy && v.servedBy !== v.model) {
    out.push(h("span", { class: "cl-badge cl-fallback", text: `served by ${v.servedBy}` }));
  }
  return out;
}

/** Put `badges` in `el` unless it shows the same texts already (no DOM churn per frame). */
function replaceBadges(el: HTMLElement, badges: HTMLElement[]): void {
  if (changed(el, badges.map((b) => b.textContent).join("|"))) el.replaceChildren(...badges);
}

export class MemberPane {
  readonly el: HTMLElement;
  private title: HTMLElement;
  private badges: HTMLElement;
  private state: HTMLElement;
  private thought: HTMLDetailsElement;
  private thoughtBody: Markdown;
  private answer: Markdown;
  private error: HTMLElement;
  private copySource = "";

  constructor(v: MemberView) {
    this.title = h("h4", { class: "cl-member-title", text: `${v.model} #${v.instance}` });
    this.state = h("span", { class: "cl-state" });
    this.badges = h("span", { class: "cl-badges" });
    this.thoughtBody = new Markdown("cl-thought-body");
    this.thought = h(
      "details",
      { class: "cl-thought" },
      h("summary", { text: "Thought process" }),
      this.thoughtBody.el,
    );
    this.answer = new Markdown("cl-answer");
    this.error = h("div", { class: "cl-member-error", role: "alert", hidden: true });
    this.el = h(
      "section",
      { class: "cl-member cl-contained", "data-key": v.key, "aria-label": `${v.model} #${v.instance}` },
      h(
        "header",
        { class: "cl-member-head" },
        this.title,
        this.state,
        this.badges,
        copyButton(`Copy the answer of ${v.model} #${v.instance}`, () => this.copySource),
      ),
      this.thought,
      this.answer.el,
      this.error,
    );
  }

  update(v: MemberView): void {
    const el = this.el;
    setAttr(el, "data-status", v.status);
    setAttr(el, "data-iteration", String(v.iteration));
    setAttr(el, "data-streamed-chars", String(v.streamedChars));
    setAttr(el, "data-stream-check", v.streamCheck || null);
    const state = {
      queued: "queued (the model takes one call at a time)…",
      waiting: "waiting…",
      streaming: "streaming…",
      done: "done",
      failed: "failed",
    }[v.status];
    const running = v.status === "waiting" || v.status === "streaming";
    setText(this.state, running && v.timeLimit ? `${state} (limit ${v.timeLimit} s)` : state);
    // badges: confidence, cached, served by a fallback
    const badges: HTMLElement[] = [];
    if (v.status === "done") {
      badges.push(
        h("span", {
          class: "cl-badge cl-confidence",
          title: "the member's own confidence",
          text: `confidence ${pct(v.confidence)}`,
        }),
      );
    }
    if (v.truncated) {
      badges.push(h("span", { class: "cl-badge cl-truncated", title: v.error ?? "", text: "truncated" }));
    }
    badges.push(...originBadges(v));
    replaceBadges(this.badges, badges);
    this.thought.hidden = !v.thought;
    this.thoughtBody.set(v.thought);
    this.copySource = v.status === "failed" ? v.text : v.answer;
    if (v.status === "failed") {
      this.error.hidden = false;
      setText(this.error, `Failed (${v.errorType ?? "error"}): ${v.error ?? "unknown error"}`);
      this.answer.set(v.text ? `*Partial output:*\n\n${v.text}` : "");
    } else {
      this.error.hidden = true;
      this.answer.set(v.answer, v.status === "done" ? v.spans : null);
    }
  }
}

export class SynthesisPane {
  readonly el: HTMLElement;
  private head: HTMLElement;
  private warning: HTMLElement;
  private body: Markdown;
  private analysis: Markdown;
  private dissent: Markdown;
  private areas: HTMLElement;
  private raw: HTMLPreElement;
  private rawDetails: HTMLDetailsElement;
  private analysisBox: HTMLElement;
  private dissentBox: HTMLElement;
  private areasBox: HTMLElement;

  constructor() {
    this.head = h("header", { class: "cl-synthesis-head" });
    this.warning = h("div", { class: "cl-parse-warning", role: "alert", hidden: true });
    this.body = new Markdown("cl-synthesis-text");
    this.analysis = new Markdown("cl-analysis");
    this.dissent = new Markdown("cl-dissent");
    this.areas = h("ul", { class: "cl-areas" });
    this.analysisBox = h("details", { class: "cl-box" }, h("summary", { text: "Analysis" }), this.analysis.el);
    this.dissentBox = h("details", { class: "cl-box", open: true }, h("summary", { text: "Dissent" }), this.dissent.el);
    this.areasBox = h("div", { class: "cl-box" }, h("h5", { text: "Refinement areas" }), this.areas);
    this.raw = h("pre", { class: "cl-raw" });
    this.rawDetails = h(
      "details",
      { class: "cl-box cl-raw-box" },
      h("summary", { text: "Raw arbiter output" }),
      this.raw,
    );
    this.el = h(
      "section",
      { class: "cl-synthesis cl-contained", "aria-label": "Synthesis" },
      this.head,
      this.warning,
      this.body.el,
      this.analysisBox,
      this.dissentBox,
      this.areasBox,
      this.rawDetails,
    );
  }

  update(s: SynthesisView): void {
    const head = [
      h("h4", { text: `Synthesis by ${s.model}` }),
      h("span", { class: "cl-badge cl-confidence", text: `confidence ${pct(s.confidence)}` }),
    ];
    if (s.needsIteration) head.push(h("span", { class: "cl-badge", text: "asks for another iteration" }));
    head.push(...originBadges(s));
    replaceBadges(this.head, head);
    setAttr(this.el, "data-parse-ok", String(s.parseOk));
    this.warning.hidden = s.parseOk;
    if (!s.parseOk) {
      setText(
        this.warning,
        "⚠ The arbiter's output did not parse cleanly; what is shown may be incomplete. " +
          (s.warnings.length ? `(${s.warnings.join("; ")}) ` : "") +
          "Check the raw arbiter output below.",
      );
      this.rawDetails.open = true;
    }
    this.body.set(s.synthesis, s.spans);
    this.analysisBox.hidden = !s.analysis;
    this.analysis.set(s.analysis);
    this.dissentBox.hidden = !s.dissent;
    this.dissent.set(s.dissent);
    this.areasBox.hidden = s.refinementAreas.length === 0;
    const areasSig = s.refinementAreas.join("\u0000");
    if (changed(this.areas, areasSig)) {
      this.areas.replaceChildren(
        ...s.refinementAreas.map((a) => {
          const li = h("li");
          const md = new Markdown("cl-area");
          md.set(a);
          li.append(md.el);
          return li;
        }),
      );
    }
    // Raw output: shown as text (never parsed as HTML).
    setText(this.raw, s.raw);
  }
}
