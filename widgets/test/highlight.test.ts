import { describe, expect, it } from "vitest";
import { highlightSpans } from "../src/highlight";
import { renderMarkdownInto } from "../src/sanitize";

describe("agreement highlighting on rendered markdown", () => {
  it("wraps shared and unique spans, across markdown syntax", () => {
    const raw = "The sky is **blue** because of scattering. Only I say [this](https://example.org).";
    const shared = { start: 0, end: raw.indexOf(" Only"), kind: "shared", shared_with: ["b#1"] };
    const unique = { start: raw.indexOf("Only"), end: raw.length - 1, kind: "unique", shared_with: [] };
    const box = document.createElement("div");
    renderMarkdownInto(box, raw);
    const n = highlightSpans(box, raw, [shared, unique]);
    expect(n).toBeGreaterThan(5);
    const sharedText = Array.from(box.querySelectorAll("mark.cl-hl-shared")).map((m) => m.textContent).join(" ");
    const uniqueText = Array.from(box.querySelectorAll("mark.cl-hl-unique")).map((m) => m.textContent).join(" ");
    expect(sharedText).toContain("The sky is");
    expect(sharedText).toContain("blue");
    expect(sharedText).toContain("because of scattering");
    expect(uniqueText).toContain("Only I say");
    expect(uniqueText).toContain("this");
    expect(box.querySelector("mark.cl-hl-shared")!.getAttribute("title")).toBe("shared with b#1");
    // the text itself is unchanged
    expect(box.textContent!.trim()).toBe("The sky is blue because of scattering. Only I say this.");
  });

  it("does nothing without spans and never changes the text", () => {
    const box = document.createElement("div");
    renderMarkdownInto(box, "a b c");
    expect(highlightSpans(box, "a b c", [])).toBe(0);
    expect(box.querySelector("mark")).toBeNull();
  });
});
