// The cases shared with the Python tests (tests/test_widget_messages.py): splitStreaming
// mirrors parse_member_response, parseModelSpec mirrors parse_models.
import { describe, expect, it } from "vitest";
import { parseModelSpec, splitStreaming } from "../src/state";
import { fixture } from "./schema";

const cases = fixture("parsers.json");

describe("shared parser cases (widgets/test/fixtures/parsers.json)", () => {
  it.each(cases.splitStreaming as any[])("splitStreaming($raw)", (c) => {
    expect(splitStreaming(c.raw)).toEqual({ thought: c.thought, answer: c.answer });
  });

  it.each(cases.parseModelSpec as any[])("parseModelSpec($spec)", (c) => {
    expect(parseModelSpec(c.spec, c.known)).toEqual(c.models);
  });

  it("has cases of both kinds", () => {
    expect(cases.splitStreaming.filter((c: any) => !c.streaming).length).toBeGreaterThan(3);
    expect(cases.parseModelSpec.length).toBeGreaterThan(3);
  });
});
