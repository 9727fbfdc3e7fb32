// Vote mode's tally (vote.ts) in a turn: shown instead of the arbiter's synthesis.
import { afterEach, describe, expect, it } from "vitest";
import { buildTurn, StreamStore, type Json } from "../src/state";
import { TurnComponent } from "../src/turn";
import { tieNote, voteViews } from "../src/vote";
import { fixture } from "./schema";

let turn: TurnComponent;

afterEach(() => {
  turn.dispose();
  turn.el.remove();
});

/** The fixture's demo turn made into a vote over its last iteration's members. */
function voteTurn(votes: Json[], tieBreak: string | null): Json {
  const data: Json = fixture("turn.json");
  const last = data.iterations[data.iterations.length - 1];
  const synthesis = {
    ...last.synthesis,
    model: "vote",
    synthesis: votes[0].answer,
    confidence: 0.5,
    raw: "",
    votes,
    tie_break: tieBreak,
  };
  return {
    ...data,
    synthesis: { ...data.synthesis, synthesis: synthesis.synthesis, confidence: 0.5 },
    metadata: { ...data.metadata, mode: "vote" },
    iterations: [{ ...last, number: 1, synthesis }],
  };
}

const TIED = [
  { answer: "Bergen <b>", key: "bergen <b>", count: 2, members: ["a#1", "a#3"], confidence: 1.2 },
  { answer: "Oslo", key: "oslo", count: 2, members: ["a#2", "a#4"], confidence: 0.9 },
];

describe("VotePane", () => {
  it("shows the tally, not the synthesis, for a vote turn", () => {
    turn = new TurnComponent({ send: () => undefined, specs: () => ({}) });
    document.body.append(turn.el);
    turn.update(buildTurn(voteTurn(TIED, "confidence"), new StreamStore(), false));
    const pane = turn.el.querySelector<HTMLElement>(".cl-vote")!;
    expect(pane.hidden).toBe(false);
    expect(turn.el.querySelector<HTMLElement>(".cl-synthesis")!.hidden).toBe(true);
    const rows = [...pane.querySelectorAll("tbody tr")].map((r) =>
      [...r.querySelectorAll("td")].map((c) => c.textContent),
    );
    expect(rows).toEqual([
      ["Bergen <b>", "2", "50%", "a#1, a#3"],
      ["Oslo", "2", "50%", "a#2, a#4"],
    ]);
    expect(pane.querySelector("b")).toBeNull(); // answers are text, never markup
    expect(pane.querySelector(".cl-vote-winner")!.textContent).toBe("Bergen <b>");
    expect(pane.querySelector<HTMLElement>(".cl-vote-tie")!.textContent).toContain(
      "broken by the voters' stated confidence",
    );
    expect(turn.el.querySelector(".cl-answer-status")!.textContent).toContain("50% of the votes");
  });

  it("says when there was no tie and when no vote was cast", () => {
    const votes = voteViews([{ answer: "7", key: "7", count: 3, members: ["a#1"], confidence: 0 }]);
    expect(tieNote(votes, null)).toBe("");
    expect(tieNote(voteViews(TIED), "order")).toBe(
      "Tie: 2 answers with 2 votes each, broken by config order (the stated confidence tied too).",
    );
    turn = new TurnComponent({ send: () => undefined, specs: () => ({}) });
    const empty = voteTurn([{ answer: "", key: "", count: 0, members: [] }], null);
    empty.iterations[0].synthesis = {
      ...empty.iterations[0].synthesis,
      votes: [],
      parse_ok: false,
      warnings: ["no member's answer could be read: no vote was cast"],
    };
    turn.update(buildTurn(empty, new StreamStore(), false));
    const warning = turn.el.querySelector<HTMLElement>(".cl-vote .cl-parse-warning")!;
    expect(warning.hidden).toBe(false);
    expect(warning.textContent).toContain("no vote was cast");
  });
});
