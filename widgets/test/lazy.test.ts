// KaTeX and highlight.js load the first time model text needs them (lazy.ts, math.ts,
// code.ts): until then code shows plain with its copy button and a formula as its TeX source,
// still through the sanitiser; the text is rendered again when they arrive, and later renders
// use them at once. The two modules are held back here until the test lets them load.
import { describe, expect, it, vi } from "vitest";
import { syntax } from "../src/code";
import { LazyModule } from "../src/lazy";
import { katex } from "../src/math";
import { Markdown } from "../src/panes";
import { renderMarkdownInto } from "../src/sanitize";
import { check, payloads } from "./xss";

const gate = vi.hoisted(() => {
  let open = () => {};
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open, requested: [] as string[] };
});

vi.mock("../src/syntax", async (importOriginal) => {
  gate.requested.push("syntax");
  await gate.opened;
  return importOriginal();
});
vi.mock("../src/typeset", async (importOriginal) => {
  gate.requested.push("typeset");
  await gate.opened;
  return importOriginal();
});

const TEXT = "Euler: $e^{i\\pi} + 1 = 0$, and\n\n$$\n\\frac{a}{b}\n$$\n\n```python\ndef f(x):\n    return x # <b>not bold</b>\n```\n";

function box(): HTMLElement {
  return document.body.appendChild(document.createElement("div"));
}

describe("before highlight.js and KaTeX have loaded", () => {
  const first = box();
  let firstRender: Promise<boolean> | null = null;
  let afterCalls = 0;
  const md = new Markdown("cl-answer");
  let marked: Promise<boolean> | null = null;
  const corpus: { el: HTMLElement; done: Promise<boolean> | null }[] = [];

  it("text without code or math loads neither and is done at once", () => {
    const el = box();
    expect(renderMarkdownInto(el, "Just **words**, a `span` and 5 $ or so.")).toBeNull();
    expect(el.querySelector("strong")!.textContent).toBe("words");
    expect([syntax.state, katex.state]).toEqual(["idle", "idle"]);
  });

  it("shows code plain with its header and copy button, and math as its source", () => {
    firstRender = renderMarkdownInto(first, TEXT, () => (afterCalls += 1));
    expect(firstRender).toBeInstanceOf(Promise);
    expect(afterCalls).toBe(1);
    expect([syntax.state, katex.state]).toEqual(["loading", "loading"]);
    const code = first.querySelector(".cl-code pre > code")!;
    expect(code.textContent).toBe("def f(x):\n    return x # <b>not bold</b>\n");
    expect(code.children.length).toBe(0); // plain text: no highlighting, no markup
    expect(first.querySelector(".cl-code-lang")!.textContent).toBe("python");
    expect(first.querySelector(".cl-code-head button.cl-copy")).not.toBeNull();
    const [inline, display] = Array.from(first.querySelectorAll(".cl-math"));
    expect(inline.tagName).toBe("SPAN");
    expect(inline.textContent).toBe("$e^{i\\pi} + 1 = 0$");
    expect(display.matches("div.cl-math-display")).toBe(true);
    expect(display.textContent).toBe("$$\n\\frac{a}{b}\n$$");
    expect(first.querySelector(".katex, .hljs-keyword, b")).toBeNull();
    expect(syntax.current()).toBeNull();
    expect(katex.current()).toBeNull();
  });

  it("marks agreement in the plain text, and again in the text rendered again", async () => {
    const raw = "Both say $x^2$ here.";
    marked = md.set(raw, [{ start: 0, end: 8, kind: "shared", shared_with: ["b#1"] }]);
    expect(marked).toBeInstanceOf(Promise);
    expect(md.el.dataset.highlighted).toBe("2");
    expect(md.el.querySelector("mark.cl-hl-shared")!.textContent).toBe("Both say");
  });

  it("keeps every payload of the XSS corpus inert", () => {
    for (const payload of payloads) {
      const el = box();
      corpus.push({ el, done: renderMarkdownInto(el, payload) });
      check(el);
      expect(el.querySelector("img, .katex, .hljs")).toBeNull();
    }
    expect(corpus.filter((c) => c.done).length).toBeGreaterThanOrEqual(8); // the code and math payloads
  });

  it("renders a text again when they arrive, unless it was rendered anew meanwhile", async () => {
    const replaced = box();
    const stale = renderMarkdownInto(replaced, "```\nold\n```");
    expect(renderMarkdownInto(replaced, "new words")).toBeNull();
    gate.open();
    expect(await stale).toBe(false);
    expect(replaced.textContent!.trim()).toBe("new words");

    expect(await firstRender).toBe(true);
    expect(afterCalls).toBe(2);
    const code = first.querySelector(".cl-code pre > code")!;
    expect(code.className).toBe("hljs");
    expect(code.querySelector(".hljs-keyword")!.textContent).toBe("def");
    expect(code.textContent).toBe("def f(x):\n    return x # <b>not bold</b>\n");
    expect(first.querySelector("b")).toBeNull();
    expect(first.querySelectorAll(".cl-code").length).toBe(1);
    expect(first.querySelector("p .cl-math .katex math annotation")!.textContent).toBe("e^{i\\pi} + 1 = 0");
    expect(first.querySelector("div.cl-math-display .katex-display .mfrac")).not.toBeNull();
    expect(first.textContent).not.toContain("\uE000");
    expect(gate.requested.sort()).toEqual(["syntax", "typeset"]); // each imported once

    expect(await marked).toBe(true);
    expect(md.el.dataset.highlighted).toBe("2");
    expect(md.el.querySelector("mark.cl-hl-shared")!.textContent).toBe("Both say");
    expect(md.el.querySelector(".cl-math .katex")).not.toBeNull();
  });

  it("the corpus stays inert once rendered again with them", async () => {
    for (const { el, done } of corpus) {
      if (done) expect(await done).toBe(true);
      check(el);
    }
    expect(corpus.some(({ el }) => el.querySelector(".katex"))).toBe(true);
  });

  it("a later render uses them at once", () => {
    const el = box();
    expect(renderMarkdownInto(el, TEXT)).toBeNull();
    expect(el.querySelector(".hljs-keyword")!.textContent).toBe("def");
    expect(el.querySelectorAll(".cl-math .katex").length).toBe(2);
  });
});

describe("LazyModule", () => {
  it("loads once, and after a failure names it and tries again on the next request", async () => {
    let calls = 0;
    const mod = new LazyModule("the test module", async () => {
      calls += 1;
      if (calls === 1) throw new Error("offline");
      return { value: 42 };
    });
    expect(mod.current()).toBeNull();
    await expect(mod.ready()).rejects.toThrow(/could not load the test module \(Error: offline\)/);
    expect(await mod.ready()).toEqual({ value: 42 });
    expect(mod.current()).toEqual({ value: 42 });
    await mod.ready();
    expect(calls).toBe(2);
  });
});
