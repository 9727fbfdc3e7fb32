// One turn (turn.ts) from a Python-made turn (test/fixtures/turn.json: a ChatWidget's
// turns[-1] after a demo run of three iterations) and from live streams.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { FrontendMessage } from "../src/messages.gen";
import { buildTurn, StreamStore, type Json } from "../src/state";
import { LiveChart } from "../src/charts";
import { TurnComponent } from "../src/turn";
import { check, fixture } from "./schema";

let sent: FrontendMessage[];
let turn: TurnComponent;

function make(specs: Record<string, any> = {}): TurnComponent {
  turn = new TurnComponent({ send: (m) => sent.push(m), specs: () => specs });
  document.body.append(turn.el);
  return turn;
}

beforeEach(() => {
  vi.useFakeTimers();
  sent = [];
});

afterEach(() => {
  for (const msg of sent) expect(check(msg, "FrontendMessage")).toEqual([]);
  turn.dispose();
  turn.el.remove();
  vi.useRealTimers();
});

describe("TurnComponent", () => {
  const data: Json = fixture("turn.json");
  const last = data.iterations[data.iterations.length - 1];

  it("marks a cached answer and one served by a fallback, on members and synthesis", () => {
    const plain = structuredClone(data);
    const p = plain.iterations[plain.iterations.length - 1];
    for (const x of [...p.members, p.synthesis]) Object.assign(x, { cached: false, served_by: x.model });
    const d = structuredClone(plain);
    const it = d.iterations[d.iterations.length - 1];
    it.members[0].cached = true;
    it.members[1].served_by = "backup-model";
    it.synthesis.cached = true;
    it.synthesis.served_by = "backup-judge";
    const t = make();
    t.update(buildTurn(d, new StreamStore(), false));
    const members = [...t.el.querySelectorAll<HTMLElement>(".cl-member")];
    const badges = (el: Element) => [...el.querySelectorAll(".cl-cached, .cl-fallback")].map((b) => b.textContent);
    expect(badges(members[0])).toEqual(["cached"]);
    expect(badges(members[1])).toEqual(["served by backup-model"]);
    expect(badges(members[2])).toEqual([]); // served by its own model: no badge
    expect(badges(t.el.querySelector(".cl-synthesis")!)).toEqual(["cached", "served by backup-judge"]);
    t.update(buildTurn(plain, new StreamStore(), false)); // the same turn, plain: badges go
    expect(t.el.querySelectorAll(".cl-cached, .cl-fallback")).toHaveLength(0);
  });

  it("shows the prompt, the latest iteration's members and its synthesis", () => {
    const t = make();
    t.update(buildTurn(data, new StreamStore(), false));
    expect(t.el.dataset.runId).toBe(data.ui.run_id);
    expect(t.el.dataset.status).toBe(data.ui.status);
    expect(t.el.querySelector(".cl-user-prompt")!.textContent).toContain(data.original_prompt);
    const panes = [...t.el.querySelectorAll<HTMLElement>(".cl-member")];
    expect(panes.map((p) => p.dataset.key)).toEqual(last.members.map((m: Json) => `${m.model}#${m.instance}`));
    for (const p of panes) expect(p.dataset.status).toBe("done");
    expect(panes[0].querySelector(".cl-answer")!.textContent).toContain(last.members[0].answer.split("\n")[0].slice(0, 20));
    const synthesis = t.el.querySelector<HTMLElement>(".cl-synthesis")!;
    expect(synthesis.hidden).toBe(false);
    expect(synthesis.querySelector(".cl-raw")!.textContent).toBe(last.synthesis.raw);
    expect(t.el.querySelector(".cl-turn-meta")!.textContent).toContain(`${data.iterations.length} iteration(s)`);
  });

  it("draws a folded turn's charts only when its working is opened", () => {
    const mount = vi.spyOn(LiveChart.prototype, "mount").mockImplementation(() => Promise.resolve());
    try {
      const spec = { mark: "point" };
      const specs = { confidence: { [data.ui.confidence_chart]: spec }, member_confidence: spec, consensus: spec };
      const t = make(specs);
      t.update(buildTurn(data, new StreamStore(), false)); // a finished turn: working folded
      const working = t.el.querySelector<HTMLDetailsElement>(".cl-working")!;
      expect(working.open).toBe(false);
      expect(t.el.querySelectorAll(".cl-chart")).toHaveLength(3);
      expect(mount).not.toHaveBeenCalled(); // no vega for a turn nobody unfolded
      working.open = true;
      working.dispatchEvent(new Event("toggle"));
      expect(mount).toHaveBeenCalledTimes(3);
      t.update(buildTurn(data, new StreamStore(), false));
      expect(mount).toHaveBeenCalledTimes(6); // asked again: LiveChart embeds once (below)
    } finally {
      mount.mockRestore();
    }
    const chart = new LiveChart({ mark: "point" }, "confidence", "append", "a chart");
    document.body.append(chart.el);
    const first = chart.mount();
    expect(chart.mount()).toBe(first);
    chart.dispose();
    chart.el.remove();
  });

  it("puts the answer first and folds the working once the answer is there", () => {
    const t = make();
    const running = { ...data, ui: { ...data.ui, status: "running" }, iterations: [{ ...data.iterations[0], synthesis: null }] };
    t.update(buildTurn(running, new StreamStore(), true));
    const working = t.el.querySelector<HTMLDetailsElement>(".cl-working")!;
    expect(working.open).toBe(true); // members stream, the arbiter has not spoken: open
    t.update(buildTurn(data, new StreamStore(), false));
    const answer = t.el.querySelector<HTMLElement>(".cl-answer-box")!;
    expect(answer.compareDocumentPosition(working) & Node.DOCUMENT_POSITION_FOLLOWING).toBeTruthy();
    expect(answer.querySelector(".cl-synthesis")).not.toBeNull();
    expect(working.querySelector(".cl-member")).not.toBeNull();
    expect(working.open).toBe(false); // folded once the answer is there
    const members = last.members.length;
    const status = t.el.querySelector(".cl-answer-status")!.textContent!;
    expect(status).toMatch(new RegExp(`^${members} members · ${data.iterations.length} iterations · \\d+% [≥<] \\d+%`));
    // the reader's choice is kept across updates
    working.open = true;
    working.dispatchEvent(new Event("toggle"));
    t.update(buildTurn({ ...data }, new StreamStore(), false));
    expect(working.open).toBe(true);
  });

  it("folds a long prompt with 'Show all'", () => {
    const t = make();
    const prompt = Array.from({ length: 20 }, (_, i) => `line ${i}`).join("\n");
    t.update(buildTurn({ ...data, original_prompt: prompt }, new StreamStore(), false));
    const box = t.el.querySelector<HTMLElement>(".cl-user-prompt")!;
    const fold = t.el.querySelector<HTMLButtonElement>(".cl-prompt-fold")!;
    expect(box.dataset.folded).toBe("true");
    expect(fold.hidden).toBe(false);
    fold.click();
    expect(box.dataset.folded).toBe("false");
    expect(fold.textContent).toBe("Show less");
    expect(box.textContent).toContain("line 19"); // nothing is cut, only folded
  });

  it("steps through the iterations on the timeline", () => {
    const t = make();
    t.update(buildTurn(data, new StreamStore(), false));
    const buttons = [...t.el.querySelectorAll<HTMLButtonElement>(".cl-timeline button")];
    expect(buttons).toHaveLength(data.iterations.length);
    expect(buttons.at(-1)!.getAttribute("aria-pressed")).toBe("true");
    buttons[0].click();
    expect(t.el.querySelector<HTMLElement>(".cl-iteration")!.dataset.iteration).toBe("1");
    const first = t.el.querySelector<HTMLButtonElement>('.cl-timeline button[data-iteration="1"]')!;
    expect(first.getAttribute("aria-pressed")).toBe("true");
  });

  it("exports and deletes (after a confirmation) a finished run", () => {
    const t = make();
    t.update(buildTurn(data, new StreamStore(), false));
    const button = (action: string) => t.el.querySelector<HTMLButtonElement>(`[data-action=${action}]`)!;
    button("export-json").click();
    button("export-markdown").click();
    expect(sent).toEqual([
      { type: "export", id: data.ui.run_id, format: "json" },
      { type: "export", id: data.ui.run_id, format: "markdown" },
    ]);
    button("delete").click();
    expect(sent).toHaveLength(2);
    expect(button("delete").textContent).toBe("Confirm delete");
    button("delete").click();
    expect(sent.at(-1)).toEqual({ type: "delete_run", id: data.ui.run_id });
    vi.advanceTimersByTime(5000);
    expect(button("delete").textContent).toBe("Delete");
  });

  it("streams a live member's thought and answer, then waits for the others", () => {
    const live: Json = {
      ...data,
      synthesis: null,
      iterations: [{ number: 1, members: [], synthesis: null }],
      ui: { ...data.ui, run_id: "live-1", status: "running", phase: "running", highlights: {} },
    };
    const streams = new StreamStore();
    const [a, b] = data.ui.members;
    streams.apply([
      { kind: "member_delta", run_id: "live-1", model: a.model, instance: a.instance, iteration: 1, stage: "answer", channel: "text", text: "<thinking>Light scat" },
      { kind: "member_delta", run_id: "live-1", model: a.model, instance: a.instance, iteration: 1, stage: "answer", channel: "text", text: "ters</thinking><answer>Blue" },
    ]);
    const t = make();
    t.update(buildTurn(live, streams, true));
    const pane = (key: string) => t.el.querySelector<HTMLElement>(`.cl-member[data-key="${key}"]`)!;
    expect(pane(a.key).dataset.status).toBe("streaming");
    expect(pane(a.key).querySelector(".cl-thought-body")!.textContent).toContain("Light scatters");
    expect(pane(a.key).querySelector(".cl-answer")!.textContent).toContain("Blue");
    expect(pane(b.key).dataset.status).toBe("waiting");
    expect(t.el.querySelector(".cl-turn-actions")!.children).toHaveLength(0); // no export while running
    expect(t.el.querySelector<HTMLElement>(".cl-synthesis")!.hidden).toBe(true);
  });

  it("shows a failed member's error", () => {
    const failed: Json = structuredClone(data);
    const m = failed.iterations.at(-1).members[0];
    Object.assign(m, { status: "failed", error: "provider down", error_type: "ServiceUnavailable", text: "" });
    const t = make();
    t.update(buildTurn(failed, new StreamStore(), false));
    const pane = t.el.querySelector<HTMLElement>(`.cl-member[data-key="${m.model}#${m.instance}"]`)!;
    expect(pane.dataset.status).toBe("failed");
    const error = pane.querySelector<HTMLElement>(".cl-member-error")!;
    expect(error.hidden).toBe(false);
    expect(error.textContent).toBe("Failed (ServiceUnavailable): provider down");
  });
});
