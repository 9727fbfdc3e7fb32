import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { RECOMMEND_DELAY_MS, RecommendBox } from "../src/recommend";

describe("RecommendBox", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  function setup() {
    const sent: any[] = [];
    const applied: Record<string, number>[] = [];
    let prompt = "";
    const box = new RecommendBox(
      (m) => sent.push(m),
      () => prompt,
      (models) => applied.push(models),
    );
    const input = document.createElement("textarea");
    box.attach(input);
    document.body.append(input, box.el);
    const type = (text: string) => {
      prompt = text;
      input.dispatchEvent(new Event("input"));
    };
    return { sent, applied, box, type };
  }

  it("asks once the draft stopped changing, with the prompt as it is then", () => {
    const { sent, type } = setup();
    expect(RECOMMEND_DELAY_MS).toBe(600);
    for (const text of ["S", "So", "Sort", "Sort a list"]) {
      type(text);
      vi.advanceTimersByTime(200);
    }
    expect(sent).toEqual([]);
    vi.advanceTimersByTime(400);
    expect(sent).toEqual([{ type: "recommend", prompt: "Sort a list", req: "recommend-1" }]);
  });

  it("an empty draft asks nothing and hides the hint", () => {
    const { sent, box, type } = setup();
    type("   ");
    vi.advanceTimersByTime(600);
    expect(sent).toEqual([]);
    expect(box.el.hidden).toBe(true);
  });

  it("shows the latest hint with its support, and Use applies the members", () => {
    const { sent, applied, box, type } = setup();
    type("a");
    vi.advanceTimersByTime(600);
    type("ab");
    vi.advanceTimersByTime(600);
    expect(sent.map((m) => m.req)).toEqual(["recommend-1", "recommend-2"]);
    const hint = {
      type: "recommendation" as const,
      message: "For prompts like this: x, y (7 similar past runs)",
      members: ["x", "y"],
      support: 7,
      enough_history: true,
    };
    expect(box.onReply({ ...hint, req: "recommend-1" })).toBe(false); // stale
    expect(box.el.hidden).toBe(true);
    expect(box.onReply({ ...hint, req: "recommend-2" })).toBe(true);
    expect(box.el.hidden).toBe(false);
    expect(box.el.dataset.state).toBe("shown");
    expect(box.el.dataset.support).toBe("7");
    expect(box.el.textContent).toContain("For prompts like this: x, y (7 similar past runs)");
    const use = box.el.querySelector("button")!;
    expect(use.hidden).toBe(false);
    expect(use.getAttribute("aria-label")).toBe("Use these members: x, y");
    use.click();
    expect(applied).toEqual([{ x: 1, y: 1 }]);
  });

  it("not enough history: the sentence, no button; an error: nothing", () => {
    const { box, type } = setup();
    type("q");
    vi.advanceTimersByTime(600);
    box.onReply({
      type: "recommendation",
      req: "recommend-1",
      message: "Not enough history: 2 past runs with a synthesis, at least 5 needed.",
      members: [],
      support: 0,
      enough_history: false,
    });
    expect(box.el.dataset.state).toBe("no-history");
    expect(box.el.textContent).toContain("Not enough history");
    expect(box.el.querySelector("button")!.hidden).toBe(true);
    type("qq");
    vi.advanceTimersByTime(600);
    box.onReply({ type: "recommendation", req: "recommend-2", message: "", error: "broke" });
    expect(box.el.hidden).toBe(true);
    expect(box.el.dataset.state).toBe("none");
  });

  it("asks only while the picker's panel is open, and when it opens", () => {
    const sent: any[] = [];
    const box = new RecommendBox((m) => sent.push(m), () => "Sort a list", () => {});
    const panel = document.createElement("details");
    const input = document.createElement("textarea");
    box.attach(input, panel);
    panel.append(box.el);
    document.body.append(input, panel);
    input.dispatchEvent(new Event("input"));
    vi.advanceTimersByTime(600);
    expect(sent).toEqual([]); // closed: nothing to show, nothing asked
    panel.open = true;
    panel.dispatchEvent(new Event("toggle"));
    vi.advanceTimersByTime(600);
    expect(sent).toEqual([{ type: "recommend", prompt: "Sort a list", req: "recommend-1" }]);
  });

  it("after dispose nothing is sent", () => {
    const { sent, box, type } = setup();
    type("x");
    box.dispose();
    vi.advanceTimersByTime(1000);
    expect(sent).toEqual([]);
  });
});
