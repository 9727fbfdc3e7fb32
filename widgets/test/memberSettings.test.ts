import { describe, expect, it } from "vitest";
import { formatOptions, MemberSettings, memberKeys, OptionsField, parseOptions } from "../src/memberSettings";

describe("parseOptions", () => {
  it("accepts a JSON object; empty means no options", () => {
    expect(parseOptions('{"temperature": 0.2, "max_tokens": 50}', "a#1")).toEqual({
      ok: true,
      value: { temperature: 0.2, max_tokens: 50 },
    });
    expect(parseOptions("  {}  ", "a")).toEqual({ ok: true, value: {} });
    expect(parseOptions("", "a")).toEqual({ ok: true, value: null });
    expect(parseOptions("   \n", "a")).toEqual({ ok: true, value: null });
  });

  it.each([
    ['{"temperature": 0.2', "not valid JSON"],
    ["{temperature: 0.2}", "not valid JSON"],
    ["temperature=0.2", "not valid JSON"],
    ["[1, 2]", "not a list"],
    ["0.2", "not a number"],
    ['"hot"', "not a string"],
    ["null", "not null"],
    ["true", "not a boolean"],
  ])("refuses %s, naming the member", (text, problem) => {
    const parsed = parseOptions(text, "gpt-4o#2");
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.error).toContain("Options for gpt-4o#2");
      expect(parsed.error).toContain(problem);
      expect(parsed.error).toContain('{"temperature": 0.2}');
    }
  });

  it("formats options for their field", () => {
    expect(formatOptions({ temperature: 0.2 })).toBe('{"temperature":0.2}');
    expect(formatOptions({})).toBe("");
    expect(formatOptions(undefined)).toBe("");
  });
});

describe("member editors", () => {
  it("one editor per model, and per instance of a model that runs more than once", () => {
    expect(memberKeys({ models: { a: 2, b: 1 } })).toEqual(["a", "a#1", "a#2", "b"]);
    expect(memberKeys({ models: { b: 1 }, member_options: { "b#1": { x: 1 } } })).toEqual(["b", "b#1"]);
    expect(memberKeys({})).toEqual([]);
  });

  function setup(config: Record<string, any>) {
    const sent: { partial: any; refuse: (m: string) => void }[] = [];
    const panel = new MemberSettings((partial, refuse) => sent.push({ partial, refuse }));
    document.body.replaceChildren(panel.el);
    panel.render(config);
    return { sent, panel };
  }

  it("invalid JSON shows an inline error naming the member and is not applied", () => {
    const { sent, panel } = setup({ models: { a: 2, b: 1 } });
    const labels = [...panel.el.querySelectorAll("label")].map((l) => l.textContent);
    expect(labels).toContain("Options for a#2 (JSON)");
    expect(labels).toContain("System prompt for b");
    // every control has a label
    for (const control of panel.el.querySelectorAll("textarea")) {
      expect(panel.el.querySelector(`label[for="${control.id}"]`)).not.toBeNull();
    }
    const field = panel.field("a#2")!;
    field.input.value = "{temperature: 0.2}";
    field.input.dispatchEvent(new Event("change"));
    expect(sent).toEqual([]);
    const error = panel.el.querySelector(`#${field.input.getAttribute("aria-describedby")}`)!;
    expect((error as HTMLElement).hidden).toBe(false);
    expect(error.textContent).toContain("Options for a#2");
    expect(field.input.getAttribute("aria-invalid")).toBe("true");
    // the refused text stays while the config is re-rendered
    panel.render({ models: { a: 2, b: 1 } });
    expect(field.input.value).toBe("{temperature: 0.2}");

    field.input.value = '{"temperature": 0.2}';
    field.input.dispatchEvent(new Event("change"));
    expect(sent.map((s) => s.partial)).toEqual([{ member_options: { "a#2": { temperature: 0.2 } } }]);
    expect((error as HTMLElement).hidden).toBe(true);
    expect(field.input.hasAttribute("aria-invalid")).toBe(false);
    // a refusal by the kernel is shown inline as well
    sent[0].refuse("member_options of a#2 (a): temperature: Input should be a valid number");
    expect(error.textContent).toContain("a#2");
    // emptying the field removes the member's options
    field.input.value = "";
    field.input.dispatchEvent(new Event("change"));
    expect(sent[1].partial).toEqual({ member_options: { "a#2": null } });
  });

  it("system prompts are applied per member; the config fills the fields", () => {
    const { sent, panel } = setup({
      models: { a: 1 },
      member_options: { a: { temperature: 0.5 } },
      member_system_prompts: { a: "Be brief." },
    });
    const entry = panel.el.querySelector('[data-member="a"]')!;
    expect(entry.querySelector("summary")!.textContent).toBe("a — options, system prompt");
    const system = entry.querySelector<HTMLTextAreaElement>("[data-system-prompt-for='a']")!;
    expect(system.value).toBe("Be brief.");
    expect(panel.field("a")!.input.value).toBe('{"temperature":0.5}');
    system.value = "Answer in French.";
    system.dispatchEvent(new Event("change"));
    system.value = "  ";
    system.dispatchEvent(new Event("change"));
    expect(sent.map((s) => s.partial)).toEqual([
      { member_system_prompts: { a: "Answer in French." } },
      { member_system_prompts: { a: null } },
    ]);
    // a member removed from the config loses its editor
    panel.render({ models: { b: 1 } });
    expect(panel.el.querySelector('[data-member="a"]')).toBeNull();
    expect(panel.field("b")).toBeDefined();
  });

  it("the arbiter's options field validates the same way", () => {
    const applied: any[] = [];
    const field = new OptionsField("the arbiter", "Arbiter options (JSON)", (v) => applied.push(v));
    document.body.replaceChildren(field.el);
    field.input.value = "[]";
    expect(field.commit()).toBe(false);
    expect(field.el.textContent).toContain("Options for the arbiter must be a JSON object");
    field.input.value = '{"temperature": 0}';
    expect(field.commit()).toBe(true);
    expect(applied).toEqual([{ temperature: 0 }]);
  });
});
