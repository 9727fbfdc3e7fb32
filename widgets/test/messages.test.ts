// The one message schema (widgets/messages.schema.json, generated from the pydantic models):
// the kernel's messages (a Python-made fixture) fit it, and the checker refuses what the
// models refuse. What the page sends is checked in index.test.ts and turn.test.ts.
import { describe, expect, it } from "vitest";
import type { KernelMessage } from "../src/messages.gen";
import { check, fixture, SCHEMA } from "./schema";

describe("messages.schema.json", () => {
  const samples = fixture<KernelMessage[]>("kernel_messages.json");

  it("accepts every kernel message of the fixture, of every type", () => {
    for (const msg of samples) expect(check(msg, "KernelMessage"), msg.type).toEqual([]);
    const types = new Set(samples.map((m) => m.type));
    const all = SCHEMA.$defs.KernelMessage.oneOf.map((r: any) => SCHEMA.$defs[r.$ref.split("/").pop()].properties.type.const);
    expect([...types].sort()).toEqual([...all].sort());
  });

  it("refuses messages the Python models refuse", () => {
    expect(check({ type: "ask" }, "FrontendMessage")).not.toEqual([]);
    expect(check({ type: "ask", prompt: "x", promt: "typo" }, "FrontendMessage")).not.toEqual([]);
    expect(check({ type: "export", id: "r", format: "pdf" }, "FrontendMessage")).not.toEqual([]);
    expect(check({ type: "nonsense" }, "FrontendMessage")).not.toEqual([]);
    expect(check({ type: "notice", level: "loud", message: "x" }, "KernelMessage")).not.toEqual([]);
    expect(check({ type: "events", events: [] }, "KernelMessage")).not.toEqual([]); // no seq
    expect(check({ type: "ask", prompt: "x", req: 3 }, "FrontendMessage")).toEqual([]);
  });

  it("describes the model's traits", () => {
    const model = SCHEMA.$defs.ChatModel;
    expect(Object.keys(model.properties).sort()).toEqual(
      ["chart_specs", "config", "conversation_id", "error", "live_turn", "models", "past_runs", "retention", "saved_configs", "status", "turns", "user_name"],
    );
    expect(check({ ...Object.fromEntries(model.required.map((k: string) => [k, model.properties[k].type === "string" ? "" : model.properties[k].type === "array" ? [] : {}])), status: "idle" }, "ChatModel")).toEqual([]);
  });
});
