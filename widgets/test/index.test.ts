// The widget's entry (index.ts) against a fake anywidget model: what it renders from the
// traits, what it sends, and how it takes the kernel's messages. Every message it sends is
// checked against the one schema (widgets/messages.schema.json).
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import widget, { ChatApp } from "../src/index";

const { render } = widget;
import type { KernelMessage } from "../src/messages.gen";
import { chatState, FakeModel } from "./fakeModel";
import { check, fixture } from "./schema";

let model: FakeModel;
let el: HTMLElement;
let dispose: () => void;

function mount(overrides = {}) {
  model = new FakeModel(chatState(overrides));
  el = document.createElement("div");
  document.body.append(el);
  dispose = render({ model, el });
}

const q = <T extends Element = HTMLElement>(sel: string) => el.querySelector(sel) as T;
const qa = (sel: string) => [...el.querySelectorAll<HTMLElement>(sel)];
const flush = () => vi.advanceTimersByTime(100); // the render is scheduled (no animation frames)

beforeEach(() => {
  vi.useFakeTimers();
  URL.createObjectURL = vi.fn(() => "blob:fake");
  URL.revokeObjectURL = vi.fn();
});

afterEach(() => {
  for (const msg of model.sent) expect(check(msg, "FrontendMessage"), JSON.stringify(msg)).toEqual([]);
  dispose();
  el.remove();
  vi.useRealTimers();
});

describe("ChatWidget front end (index.ts)", () => {
  it("renders the chat and says ready", () => {
    mount();
    expect(q(".cl-root")).not.toBeNull();
    expect(q(".cl-title").textContent).toBe("Consortium chat");
    expect(model.sent[0]).toEqual({ type: "ready" });
    expect(q(".cl-conversation > .cl-empty").hidden).toBe(false);
    expect(q(".cl-settings-summary").textContent).toContain("demo-analyst, demo-skeptic:2");
    expect(q(".cl-settings-summary").textContent).toContain("arbiter demo-arbiter");
  });

  it("sends the prompt with Send or Enter, not Shift+Enter, and only when idle", () => {
    mount();
    const input = q<HTMLTextAreaElement>(".cl-prompt-input");
    const send = q<HTMLButtonElement>("[data-action=send]");
    expect(send.disabled).toBe(true); // nothing to send yet
    input.value = "   ";
    input.dispatchEvent(new Event("input"));
    expect(send.disabled).toBe(true); // blank is empty
    input.value = "Why is the sky blue?";
    input.dispatchEvent(new Event("input"));
    expect(send.disabled).toBe(false);
    send.click();
    expect(model.sent).toContainEqual({ type: "ask", prompt: "Why is the sky blue?" });
    expect(input.value).toBe("");
    expect(send.disabled).toBe(true);

    input.value = "Second line";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", shiftKey: true }));
    expect(model.sent.filter((m) => m.type === "ask")).toHaveLength(1);
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(model.sent.filter((m) => m.type === "ask")).toHaveLength(2);

    model.set("status", "running");
    flush();
    expect(q<HTMLButtonElement>("[data-action=send]").disabled).toBe(true);
    expect(q(".cl-root").dataset.status).toBe("running");
    input.value = "While running";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(model.sent.filter((m) => m.type === "ask")).toHaveLength(2);
    q<HTMLButtonElement>("[data-action=stop]").click();
    expect(model.sent.at(-1)).toEqual({ type: "cancel" });
    model.sent.length = 0;
    q(".cl-root").dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    expect(model.sent).toEqual([{ type: "cancel" }]); // Escape stops a run
    model.set("status", "idle");
    flush();
    q(".cl-root").dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    expect(model.sent).toEqual([{ type: "cancel" }]); // and does nothing when idle
    model.set("status", "running");
    flush();
    q<HTMLButtonElement>("[data-action=new-chat]").click();
    expect(model.sent.at(-1)).toEqual({ type: "new_chat" });
  });

  it("asks for an estimate of the draft prompt", () => {
    mount();
    const input = q<HTMLTextAreaElement>(".cl-prompt-input");
    input.value = "How much?";
    input.dispatchEvent(new Event("input"));
    vi.advanceTimersByTime(400);
    const request = model.sent.filter((m) => m.type === "estimate").at(-1)!;
    expect(request).toMatchObject({ type: "estimate", prompt: "How much?" });
    model.receive({ type: "estimate", req: request.req, summary: "about 12 calls", calls: 12 });
    expect(q(".cl-estimate").textContent).toBe("about 12 calls");
  });

  it("shows the turns of the traits and the error", () => {
    const turn = fixture("turn.json");
    mount({ turns: [turn] });
    flush();
    const [article] = qa("article.cl-turn");
    expect(article.dataset.runId).toBe(turn.ui.run_id);
    expect(article.querySelector(".cl-user-prompt")!.textContent).toContain(turn.original_prompt);
    expect(q(".cl-conversation > .cl-empty").hidden).toBe(true);
    model.set("error", "Invalid configuration: bad");
    flush();
    expect(q(".cl-error").hidden).toBe(false);
    expect(q(".cl-error").textContent).toBe("Invalid configuration: bad");
    model.set("turns", []);
    flush();
    expect(qa("article.cl-turn")).toHaveLength(0);
  });

  it("shows the restored turns by the time it says ready", () => {
    mount();
    model.set("turns", [fixture<Record<string, unknown>>("turn.json")]); // the kernel's restore, before its answer
    expect(qa("article.cl-turn")).toHaveLength(0); // drawn on the next frame...
    model.receive({ type: "ready" });
    expect(q(".cl-root").dataset.ready).toBe("true");
    expect(qa("article.cl-turn")).toHaveLength(1); // ...unless the page says ready first
    flush();
    expect(qa("article.cl-turn")).toHaveLength(1);
  });

  it("marks a turn that completed with warnings on the turn itself", () => {
    const turn = structuredClone(fixture("turn.json"));
    turn.ui.status = "completed_with_warnings";
    turn.ui.warnings = ["the arbiter's output of iteration 1 could not be read; its raw text is shown"];
    mount({ turns: [turn] });
    flush();
    const [article] = qa("article.cl-turn");
    const badge = article.querySelector<HTMLElement>(".cl-run-status")!;
    expect(badge.classList.contains("cl-run-completed_with_warnings")).toBe(true);
    expect(badge.textContent).toContain("completed with warnings");
    const note = article.querySelector<HTMLElement>(".cl-run-warnings")!;
    expect(note.getAttribute("role")).toBe("status");
    expect(note.textContent).toContain("could not be read");
    // Not inside a closed <details>: visible without opening anything.
    expect(note.closest("details")).toBeNull();
  });

  it("takes every kind of kernel message (the Python-made fixture)", () => {
    mount();
    const messages = fixture<KernelMessage[]>("kernel_messages.json");
    for (const msg of messages) model.receive(msg);
    const root = q(".cl-root");
    expect(root.dataset.ready).toBe("true");
    const deltas = messages
      .flatMap((m) => (m.type === "events" ? m.events : []))
      .filter((e) => e.kind.endsWith("_delta")).length;
    expect(Number(root.dataset.deltas)).toBe(deltas);
    expect(Number(root.dataset.messages)).toBe(messages.filter((m) => m.type === "events").length);
    const notices = qa(".cl-notice").map((n) => n.textContent);
    expect(notices).toEqual(messages.flatMap((m) => (m.type === "notice" ? [m.message] : [])));
    expect(URL.createObjectURL).toHaveBeenCalledTimes(messages.filter((m) => m.type === "download").length);
    vi.advanceTimersByTime(11000);
    expect(qa(".cl-notice")).toHaveLength(0); // notices go away
  });

  it("lists past runs with open, export and a confirmed delete", () => {
    const run = { id: "r1", prompt: "Old question", status: "done", started_at: "2025-01-02T03:04:05", final_confidence: 0.9 };
    mount({ past_runs: [run] });
    const item = q(".cl-history-item");
    expect(item.dataset.runId).toBe("r1");
    expect(item.textContent).toContain("Old question");
    expect(item.textContent).toContain("2025-01-02 03:04");
    const buttons = [...item.querySelectorAll("button")];
    const byText = (t: string) => buttons.find((b) => b.textContent === t)!;
    byText("Open").click();
    byText("JSON").click();
    byText("Markdown").click();
    expect(model.sent.slice(-3)).toEqual([
      { type: "open_run", id: "r1" },
      { type: "export", id: "r1", format: "json" },
      { type: "export", id: "r1", format: "markdown" },
    ]);
    const del = byText("Delete");
    del.click();
    expect(model.sent.some((m) => m.type === "delete_run")).toBe(false);
    expect(del.textContent).toBe("Confirm delete");
    del.click();
    expect(model.sent.at(-1)).toEqual({ type: "delete_run", id: "r1" });
    model.set("past_runs", []);
    expect(q(".cl-history-list").textContent).toBe("No runs yet.");
  });

  it("sends settings edits as merged set_config and manages saved configs", () => {
    mount({ saved_configs: [{ name: "duo", ok: true, error: null, config: {} }] });
    const spec = qa("input[type=text]").find((i) => (i as HTMLInputElement).value.startsWith("demo-analyst")) as HTMLInputElement;
    spec.value = "demo-analyst:2, sk";
    spec.dispatchEvent(new Event("change"));
    expect(model.sent.at(-1)).toEqual({
      type: "set_config",
      config: { models: { "demo-analyst": 2, sk: 1 } },
      merge: true,
      req: expect.stringMatching(/^settings-/),
    });
    const box = q<HTMLInputElement>('input[data-model="demo-arbiter"]');
    box.checked = true;
    box.dispatchEvent(new Event("change"));
    expect(model.sent.at(-1)).toEqual({
      type: "set_config",
      config: { models: { "demo-analyst": 1, "demo-skeptic": 2, "demo-arbiter": 1 } },
      merge: true,
    });
    const saved = qa("select").find((s) => [...(s as HTMLSelectElement).options].some((o) => o.value === "duo")) as HTMLSelectElement;
    saved.value = "duo";
    const button = (t: string) => qa("button").find((b) => b.textContent === t)!;
    button("Load").click();
    expect(model.sent.at(-1)).toEqual({ type: "load_config", name: "duo" });
    const name = q<HTMLInputElement>('input[placeholder="name"]');
    name.value = " trio ";
    button("Save current as").click();
    expect(model.sent.at(-1)).toEqual({ type: "save_config", name: "trio" });
    button("Clone selected as").click();
    expect(model.sent.at(-1)).toEqual({ type: "clone_config", source: "duo", target: "trio" });
    button("Remove").click();
    expect(model.sent.at(-1)).toEqual({ type: "remove_config", name: "duo" });
  });

  it("renders again when the traits change, and stops after dispose", () => {
    mount();
    const app = new ChatApp(model);
    app.start();
    model.set("status", "cancelling");
    flush();
    expect(app.root.dataset.status).toBe("cancelling");
    expect(app.root.querySelector(".cl-status")!.textContent).toBe("Stopping…");
    app.dispose();
    model.set("status", "idle");
    flush();
    expect(app.root.dataset.status).toBe("cancelling");
  });
});
