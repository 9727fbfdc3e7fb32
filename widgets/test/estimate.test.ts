import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ESTIMATE_DELAY_MS, EstimateBox } from "../src/estimate";

describe("EstimateBox", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  function setup() {
    const sent: any[] = [];
    let prompt = "";
    const box = new EstimateBox((m) => sent.push(m), () => prompt);
    document.body.append(box.el);
    return { sent, box, type: (text: string) => ((prompt = text), box.schedule()) };
  }

  it("asks once, 300 ms after typing stops, with the prompt as it is then", () => {
    const { sent, type } = setup();
    expect(ESTIMATE_DELAY_MS).toBe(300);
    for (const text of ["W", "Wh", "Why", "Why is", "Why is the sky blue?"]) {
      type(text);
      vi.advanceTimersByTime(100); // keystrokes 100 ms apart: no request yet
    }
    expect(sent).toEqual([]);
    vi.advanceTimersByTime(199);
    expect(sent).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(sent).toEqual([{ type: "estimate", prompt: "Why is the sky blue?", req: "estimate-1" }]);
  });

  it("shows the latest answer's summary next to Send, ignores stale ones", () => {
    const { sent, box, type } = setup();
    expect(box.el.hidden).toBe(true);
    type("a");
    vi.advanceTimersByTime(300);
    type("ab");
    vi.advanceTimersByTime(300);
    expect(sent.map((m) => m.req)).toEqual(["estimate-1", "estimate-2"]);
    // the answer to the first request arrives late: not shown
    expect(box.onReply({ type: "estimate", req: "estimate-1", summary: "about 3 calls" })).toBe(false);
    expect(box.el.textContent).toBe("");
    expect(
      box.onReply({ type: "estimate", req: "estimate-2", summary: "about 12 calls, ~$0.04 at most", calls: 12, max_cost: 0.04 }),
    ).toBe(true);
    expect(box.el.hidden).toBe(false);
    expect(box.el.textContent).toBe("about 12 calls, ~$0.04 at most");
    expect(box.el.dataset.calls).toBe("12");
    expect(box.el.dataset.maxCost).toBe("0.04");
    expect(box.el.id).toMatch(/^cl-estimate-/);
  });

  it("an error shows nothing and breaks nothing", () => {
    const { box, type } = setup();
    type("x");
    vi.advanceTimersByTime(300);
    box.onReply({ type: "estimate", req: "estimate-1", summary: "about 3 calls" });
    type("xy");
    vi.advanceTimersByTime(300);
    box.onReply({ type: "estimate", req: "estimate-2", summary: "", error: "no price table" });
    expect(box.el.hidden).toBe(true);
    expect(box.el.textContent).toBe("");
    expect(box.el.dataset.state).toBe("error");
    // a send that throws (comm closed) does not escape the timer
    const broken = new EstimateBox(() => {
      throw new Error("comm closed");
    }, () => "p");
    broken.schedule();
    expect(() => vi.advanceTimersByTime(300)).not.toThrow();
    expect(broken.el.hidden).toBe(true);
  });

  it("sends nothing after dispose", () => {
    const { sent, box, type } = setup();
    type("x");
    box.dispose();
    vi.advanceTimersByTime(1000);
    box.schedule();
    vi.advanceTimersByTime(1000);
    expect(sent).toEqual([]);
  });
});
