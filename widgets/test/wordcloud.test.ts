import { beforeEach, describe, expect, it, vi } from "vitest";

// vega-embed is replaced by a recorder: the test sees what is embedded, and when.
const embeds: { el: HTMLElement; spec: any; opts: any; data: Record<string, any[]> }[] = [];
vi.mock("vega-embed", () => ({
  default: vi.fn(async (el: HTMLElement, spec: any, opts: any) => {
    const data: Record<string, any[]> = {};
    const entry = { el, spec, opts, data };
    embeds.push(entry);
    const view = {
      change(name: string, cs: any) {
        // a vega changeset: apply its removes and inserts to our rows
        let rows = data[name] ?? [];
        for (const r of cs.removes) rows = rows.filter((x) => !(typeof r === "function" ? r(x) : x === r));
        data[name] = [...rows, ...cs.inserts];
        return view;
      },
      async runAsync() {
        return view;
      },
      data(name: string) {
        return data[name] ?? [];
      },
    };
    return { view, finalize: vi.fn() };
  }),
}));
// changeset() records what is asked of it; the fake view above applies it
vi.mock("vega", () => ({
  changeset: () => {
    const cs: any = {
      removes: [] as any[],
      inserts: [] as any[],
      remove(r: any) {
        cs.removes.push(r);
        return cs;
      },
      insert(rows: any[]) {
        cs.inserts.push(...rows);
        return cs;
      },
    };
    return cs;
  },
}));

import { buildTurn, StreamStore } from "../src/state";
import { TurnComponent } from "../src/turn";
import { DARK_WORD_RANGE, memberSpec, wordCloudLabel, WordClouds, wordsByMember } from "../src/wordcloud";

const WORD_SPEC = { mark: { type: "text" }, data: { name: "words" }, title: "Words", width: 400, height: 260 };
const row = (member: string, word: string, count: number, size = 20) => ({ member, word, count, x: 100, y: 50, size });
const ROWS = [row("a#1", "blue", 3, 36), row("a#1", "sky", 1, 11), row("b#1", "beta", 1), row("b#1", "sky", 1)];

function turn(words: any[]) {
  return {
    original_prompt: "Why?",
    synthesis: { synthesis: "S", confidence: 0.9 },
    metadata: { run_id: "r1", status: "completed", mode: "compare" },
    iterations: [{ number: 1, members: [], synthesis: null }],
    ui: { run_id: "r1", status: "completed", members: [], charts: { words }, confidence_chart: "0.8" },
  };
}

const flush = () => new Promise((r) => setTimeout(r, 0));

describe("word clouds", () => {
  beforeEach(() => {
    embeds.length = 0;
    document.body.replaceChildren();
  });

  it("groups rows per member, in order", () => {
    const groups = wordsByMember(ROWS);
    expect([...groups.keys()]).toEqual(["a#1", "b#1"]);
    expect(groups.get("a#1")!.map((r) => r.word)).toEqual(["blue", "sky"]);
    expect(wordsByMember(undefined).size).toBe(0);
    expect(wordCloudLabel("a#1", groups.get("a#1")!)).toBe("Word cloud of a#1: blue (3), sky (1)");
  });

  it("titles each member's spec, and recolours it for a dark page", () => {
    const spec = { ...WORD_SPEC, encoding: { color: { field: "size", scale: { domain: [11, 36], range: ["#7ea6c8", "#1d4a73"] } } } };
    expect(memberSpec(spec, "a#1", false)).toEqual({ ...spec, title: "a#1" });
    const dark = memberSpec(spec, "a#1", true);
    expect(dark.encoding.color.scale).toEqual({ domain: [11, 36], range: DARK_WORD_RANGE });
    expect(spec.encoding.color.scale.range).toEqual(["#7ea6c8", "#1d4a73"]); // not changed
  });

  it("is folded away and embeds nothing until opened, then one chart per member", async () => {
    const comp = new TurnComponent({ send: () => {}, specs: () => ({ words: WORD_SPEC }) });
    document.body.append(comp.el);
    comp.update(buildTurn(turn(ROWS), new StreamStore(), false));
    const fold = comp.el.querySelector<HTMLDetailsElement>("details.cl-wordclouds")!;
    expect(fold.hidden).toBe(false);
    expect(fold.open).toBe(false);
    expect(fold.querySelector("summary")!.textContent).toBe("Word clouds");
    await flush();
    expect(embeds).toHaveLength(0);
    expect(fold.querySelectorAll(".cl-chart")).toHaveLength(0);

    fold.querySelector("summary")!.click(); // open it
    await flush();
    await flush();
    expect(fold.open).toBe(true);
    expect(embeds).toHaveLength(2);
    expect(embeds.map((e) => e.spec.title)).toEqual(["a#1", "b#1"]);
    expect(embeds[0].spec.data).toEqual({ name: "words" });
    expect(embeds[0].opts.actions).toBe(false);
    // each member's chart holds that member's rows only
    expect(embeds[0].data.words.map((r) => r.word)).toEqual(["blue", "sky"]);
    expect(embeds[1].data.words.map((r) => r.word)).toEqual(["beta", "sky"]);
    const charts = fold.querySelectorAll<HTMLElement>(".cl-chart");
    expect([...charts].map((c) => c.dataset.member)).toEqual(["a#1", "b#1"]);
    expect(charts[0].getAttribute("role")).toBe("img");
    expect(charts[0].getAttribute("aria-label")).toBe("Word cloud of a#1: blue (3), sky (1)");
    expect(charts[0].dataset.points).toBe("2");

    // new rows (a later iteration): the open charts are updated, not embedded again
    comp.update(buildTurn(turn([row("a#1", "light", 2), row("b#1", "beta", 2)]), new StreamStore(), false));
    await flush();
    expect(embeds).toHaveLength(2);
    expect(embeds[0].data.words.map((r) => r.word)).toEqual(["light"]);
    comp.dispose();
  });

  it("hidden while there are no rows (a live turn whose members are not done)", async () => {
    const clouds = new WordClouds(() => ({ words: WORD_SPEC }));
    document.body.append(clouds.el);
    clouds.update([]);
    expect(clouds.el.hidden).toBe(true);
    clouds.el.open = true;
    await flush();
    expect(embeds).toHaveLength(0);
    clouds.update(ROWS);
    await flush();
    await flush();
    expect(clouds.el.hidden).toBe(false);
    expect(embeds).toHaveLength(2);
  });
});
