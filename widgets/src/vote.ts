// Vote mode's tally, shown in place of the arbiter's synthesis: the winning answer, its share,
// every distinct answer with its count and voters, and how a tie was broken.

import "./vote.css";
import { changed, h, pct, setAttr, setText } from "./dom";
import type { Json, SynthesisView } from "./state";

export interface VoteView {
  answer: string;
  key: string;
  count: number;
  members: string[];
  confidence: number;
}

/** The tally of a vote decision as the turn's JSON holds it (`synthesis.votes`). */
export function voteViews(votes: Json[] | undefined | null): VoteView[] {
  return (votes ?? []).map((v) => ({
    answer: String(v.answer ?? ""),
    key: String(v.key ?? ""),
    count: Number(v.count ?? 0),
    members: Array.isArray(v.members) ? v.members.map(String) : [],
    confidence: Number(v.confidence ?? 0),
  }));
}

/** "Tie at 2 votes, broken by the voters' stated confidence", or "" when there was no tie. */
export function tieNote(votes: VoteView[], tieBreak: string | null): string {
  if (!tieBreak || votes.length === 0) return "";
  const rule =
    tieBreak === "confidence" ? "the voters' stated confidence" : "config order (the stated confidence tied too)";
  const top = votes[0].count;
  const tied = votes.filter((v) => v.count === top).length;
  return `Tie: ${tied} answers with ${top} vote${top === 1 ? "" : "s"} each, broken by ${rule}.`;
}

export class VotePane {
  readonly el: HTMLElement;
  private head: HTMLElement;
  private winner: HTMLElement;
  private tie: HTMLElement;
  private warning: HTMLElement;
  private rows: HTMLElement;

  constructor() {
    this.head = h("header", { class: "cl-synthesis-head" });
    this.winner = h("p", { class: "cl-vote-winner" });
    this.tie = h("p", { class: "cl-vote-tie", hidden: true });
    this.warning = h("div", { class: "cl-parse-warning", role: "alert", hidden: true });
    this.rows = h("tbody");
    const table = h(
      "table",
      { class: "cl-vote-table" },
      h(
        "thead",
        {},
        h("tr", {}, h("th", { text: "Answer" }), h("th", { text: "Votes" }), h("th", { text: "Share" }), h("th", { text: "Members" })),
      ),
      this.rows,
    );
    this.el = h(
      "section",
      { class: "cl-vote cl-contained", "aria-label": "Vote tally", hidden: true },
      this.head,
      this.warning,
      this.winner,
      this.tie,
      table,
    );
  }

  update(s: SynthesisView): void {
    const votes = s.votes;
    const cast = votes.reduce((n, v) => n + v.count, 0);
    const sig = JSON.stringify([votes, s.tieBreak, s.warnings]);
    if (!changed(this.el, sig)) return;
    this.head.replaceChildren(
      h("h4", { text: "Vote" }),
      h("span", { class: "cl-badge cl-confidence", text: `share ${pct(s.confidence)}` }),
      h("span", { class: "cl-badge", text: `${cast} vote${cast === 1 ? "" : "s"} cast` }),
    );
    this.warning.hidden = votes.length > 0;
    setText(this.warning, votes.length ? "" : `⚠ ${s.warnings.join("; ") || "no vote was cast"}`);
    // The answer is shown as text: a member's answer is never parsed as markup here.
    setText(this.winner, s.synthesis);
    const note = tieNote(votes, s.tieBreak);
    this.tie.hidden = !note;
    setText(this.tie, note);
    setAttr(this.el, "data-tie", s.tieBreak ?? "none");
    this.rows.replaceChildren(
      ...votes.map((v, i) =>
        h(
          "tr",
          { class: i === 0 ? "cl-vote-row cl-vote-won" : "cl-vote-row" },
          h("td", { class: "cl-vote-answer", text: v.answer }),
          h("td", { class: "cl-vote-count", text: String(v.count) }),
          h("td", { class: "cl-vote-share", text: pct(cast ? v.count / cast : null) }),
          h("td", { class: "cl-vote-members", text: v.members.join(", ") }),
        ),
      ),
    );
  }
}
