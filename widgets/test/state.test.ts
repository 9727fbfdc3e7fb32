import { describe, expect, it } from "vitest";
import {
  buildConversation,
  buildTurn,
  formatModelSpec,
  parseModelSpec,
  splitStreaming,
  StreamStore,
  streamKey,
} from "../src/state";

const delta = (model: string, text: string, extra: Record<string, any> = {}) => ({
  kind: "member_delta",
  run_id: "r1",
  model,
  instance: 1,
  iteration: 1,
  stage: "answer",
  channel: "text",
  text,
  ...extra,
});

function chunks(text: string, seed: number): string[] {
  const out: string[] = [];
  let i = 0;
  let s = seed;
  while (i < text.length) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const n = 1 + (s % 17);
    out.push(text.slice(i, i + n));
    i += n;
  }
  return out;
}

const memberResult = (model: string, text: string, extra: Record<string, any> = {}) => ({
  model,
  instance: 1,
  iteration: 1,
  stage: "answer",
  status: "done",
  text,
  answer: text,
  thought_process: "",
  confidence: 0.8,
  served_by: model,
  cached: false,
  ...extra,
});

function turn(runId: string, members: any[], extra: Record<string, any> = {}) {
  return {
    original_prompt: "Why?",
    synthesis: { synthesis: "S", confidence: 0.9 },
    metadata: { run_id: runId, status: "completed", mode: "consortium", timestamp: "2024-01-01T00:00:00" },
    iterations: [{ number: 1, members, synthesis: null }],
    ui: {
      run_id: runId,
      status: "completed",
      phase: "completed",
      members: [
        { model: "a", instance: 1, key: "a#1" },
        { model: "b", instance: 1, key: "b#1" },
      ],
      highlights: { "1": { members: { "a#1": [{ start: 0, end: 3, kind: "shared" }] } } },
      charts: { confidence: [{ iteration: 1, confidence: 0.9 }] },
      threshold: 0.8,
      confidence_chart: "0.8",
    },
    ...extra,
  };
}

describe("delta application", () => {
  it("appends every delta: the streamed text equals the model's text", () => {
    const store = new StreamStore();
    const texts: Record<string, string> = {};
    for (const m of ["a", "b", "c", "d"]) texts[m] = Array.from({ length: 4000 }, (_, i) => `${m}${i}`).join(" ");
    // interleave coalesced batches of random chunk sizes
    const queues = Object.entries(texts).map(([m, t], i) => chunks(t, i + 1).map((c) => delta(m, c)));
    while (queues.some((q) => q.length)) {
      const batch: any[] = [];
      for (const q of queues) batch.push(...q.splice(0, 7));
      store.apply(batch);
    }
    for (const [m, t] of Object.entries(texts)) {
      const key = streamKey({ kind: "member_delta", model: m, instance: 1, iteration: 1, stage: "answer" });
      expect(store.get("r1", key)?.text).toBe(t);
    }
  });

  it("keeps streams apart by instance, iteration, stage and channel", () => {
    const store = new StreamStore();
    store.apply([
      delta("a", "x"),
      delta("a", "y", { instance: 2 }),
      delta("a", "z", { iteration: 2 }),
      delta("a", "r", { stage: "peer_review" }),
      delta("a", "t", { channel: "reasoning" }),
      { kind: "arbiter_delta", run_id: "r1", model: "j", iteration: 1, stage: "arbiter", text: "A" },
    ]);
    expect(store.runs.get("r1")!.size).toBe(6);
  });

  it("marks a stream done and keeps the full text of member_done", () => {
    const store = new StreamStore();
    store.apply([delta("a", "Hel"), delta("a", "lo")]);
    store.apply([{ kind: "member_done", run_id: "r1", model: "a", instance: 1, iteration: 1, stage: "answer", text: "Hello" }]);
    const s = store.get("r1", streamKey({ kind: "member_delta", model: "a", instance: 1, iteration: 1 }))!;
    expect(s.done).toBe(true);
    expect(s.text).toBe("Hello");
    expect(s.finalText).toBe("Hello");
  });

  it("a snapshot replaces the streamed text so far (a view rendered mid-run)", () => {
    const store = new StreamStore();
    store.snapshot("r1", [{ kind: "member_delta", model: "a", instance: 1, iteration: 1, stage: "answer", channel: "text", text: "Hello wor" }]);
    store.apply([delta("a", "ld")]);
    expect(store.get("r1", streamKey({ kind: "member_delta", model: "a", instance: 1, iteration: 1 }))!.text).toBe("Hello world");
  });
});

describe("state reconstruction from traits", () => {
  it("rebuilds a finished turn from the trait alone", () => {
    const store = new StreamStore();
    const view = buildTurn(turn("r1", [memberResult("a", "The answer A."), memberResult("b", "", { status: "failed", error: "boom", error_type: "error" })]), store, false);
    expect(view.runId).toBe("r1");
    expect(view.status).toBe("completed");
    expect(view.iterations).toHaveLength(1);
    const [a, b] = view.iterations[0].members;
    expect(a.status).toBe("done");
    expect(a.answer).toBe("The answer A.");
    expect(a.confidence).toBe(0.8);
    expect(a.spans).toEqual([{ start: 0, end: 3, kind: "shared" }]);
    expect(b.status).toBe("failed");
    expect(b.error).toBe("boom");
    expect(view.charts.confidence).toHaveLength(1);
    expect(view.chartKey).toBe("0.8");
  });

  it("a queued member shows as queued until it streams; running members show their time limit", () => {
    const store = new StreamStore();
    const live = turn("r3", [], {
      metadata: { run_id: "r3", status: "running", mode: "consortium" },
      ui: { ...turn("r3", []).ui, status: "running", phase: "running", time_limit: 110 },
    });
    const queued = { kind: "member_queued", run_id: "r3", model: "b", instance: 1, iteration: 1, stage: "answer" };
    store.apply([delta("a", "Hel", { run_id: "r3" }), { ...queued, queued: true }]);
    let [a, b] = buildConversation([], live, store)[0].iterations[0].members;
    expect(a.status).toBe("streaming");
    expect(a.timeLimit).toBe(110);
    expect(b.status).toBe("queued");
    store.apply([{ ...queued, queued: false }]);
    [a, b] = buildConversation([], live, store)[0].iterations[0].members;
    expect(b.status).toBe("waiting");
    store.apply([delta("b", "Hi", { run_id: "r3" })]);
    [a, b] = buildConversation([], live, store)[0].iterations[0].members;
    expect(b.status).toBe("streaming");
  });

  it("a truncated answer is marked as such", () => {
    const store = new StreamStore();
    const cut = memberResult("a", "Half an ans", { truncated: true, error: "cut at 100 tokens", error_type: "cut_off" });
    const [a] = buildTurn(turn("r4", [cut]), store, false).iterations[0].members;
    expect(a.status).toBe("done");
    expect(a.truncated).toBe(true);
  });

  it("a live turn shows streaming text until member_done, then the full text", () => {
    const store = new StreamStore();
    const live = turn("r2", [], {
      metadata: { run_id: "r2", status: "running", mode: "consortium" },
      ui: { ...turn("r2", []).ui, status: "running", phase: "running" },
    });
    store.apply([delta("a", "<thinking>hmm</thinking><answer>Par", { run_id: "r2" })]);
    let view = buildConversation([], live, store)[0];
    expect(view.live).toBe(true);
    const [a, b] = view.iterations[0].members;
    expect(a.status).toBe("streaming");
    expect(a.thought).toBe("hmm");
    expect(a.answer).toBe("Par");
    expect(b.status).toBe("waiting");
    // member_done arrives: the trait holds the member, whose full text wins
    store.apply([delta("a", "tial</answer>", { run_id: "r2" })]);
    live.iterations[0].members = [memberResult("a", "<thinking>hmm</thinking><answer>Partial</answer>", { answer: "Partial", thought_process: "hmm" })];
    view = buildConversation([], live, store)[0];
    const done = view.iterations[0].members[0];
    expect(done.status).toBe("done");
    expect(done.answer).toBe("Partial");
    expect(done.streamCheck).toBe("exact");
    expect(done.streamedChars).toBe(done.text.length);
  });

  it("a finished live turn that is also in turns is shown once", () => {
    const t = turn("r1", [memberResult("a", "x")]);
    expect(buildConversation([t], t, new StreamStore())).toHaveLength(1);
  });

  it("shows the arbiter's streamed text before its synthesis", () => {
    const store = new StreamStore();
    const live = turn("r3", [memberResult("a", "x"), memberResult("b", "y")], {
      ui: { ...turn("r3", []).ui, status: "running", phase: "running" },
    });
    live.iterations[0].synthesis = null;
    store.apply([{ kind: "arbiter_delta", run_id: "r3", model: "judge", iteration: 1, stage: "arbiter", text: "<synthesis_output>" }]);
    const view = buildConversation([], live, store)[0];
    expect(view.iterations[0].arbiterStream).toBe("<synthesis_output>");
    expect(view.iterations[0].arbiterModel).toBe("judge");
  });
});

describe("helpers", () => {
  it("splits streaming text into thought and answer", () => {
    expect(splitStreaming("<thinking>a b")).toEqual({ thought: "a b", answer: "" });
    expect(splitStreaming("<thinking>a</thinking>\n<answer>Yes</answer>\n<confidence>0.8</confidence>")).toEqual({ thought: "a", answer: "Yes" });
    expect(splitStreaming("plain text <ans")).toEqual({ thought: "", answer: "plain text" });
  });

  it("parses and formats model:count", () => {
    expect(parseModelSpec("a:2, b\nc:1, a")).toEqual({ a: 3, b: 1, c: 1 });
    expect(parseModelSpec("llama3.2:3b")).toEqual({ "llama3.2:3b": 1 });
    expect(parseModelSpec("phi:2", ["phi:2"])).toEqual({ "phi:2": 1 });
    expect(formatModelSpec({ a: 2, b: 1 })).toBe("a:2, b");
  });
});
