// The usual chat controls (actions.ts), code highlighting (code.ts) and math (math.ts), and
// that formulas and code stay inside the sanitiser's policy.
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { answerMarkdown, copyText } from "../src/actions";
import { codeLanguage, enhanceCode, syntax } from "../src/code";
import { katex } from "../src/math";
import { cleanStyle } from "../src/typeset";
import type { FrontendMessage } from "../src/messages.gen";
import { renderMarkdownInto } from "../src/sanitize";
import { buildTurn, StreamStore, type Json } from "../src/state";
import { TurnComponent } from "../src/turn";
import { check, fixture } from "./schema";

function render(text: string): HTMLElement {
  const box = document.createElement("div");
  renderMarkdownInto(box, text);
  return box;
}

function setClipboard(writeText: (t: string) => Promise<void>): void {
  Object.defineProperty(navigator, "clipboard", { value: { writeText }, configurable: true });
}

afterEach(() => {
  vi.restoreAllMocks();
  Reflect.deleteProperty(navigator, "clipboard");
});

// What follows shows highlighted code and typeset math: both load first (lazy.test.ts covers
// the text shown before they have).
beforeAll(async () => {
  await Promise.all([syntax.ready(), katex.ready()]);
});

describe("code blocks", () => {
  it("are highlighted by the language the fence names, with a copy button", () => {
    const box = render("```python\ndef f(x):\n    return 'a' # note\n```");
    const code = box.querySelector(".cl-code pre > code")!;
    expect(box.querySelector(".cl-code-lang")!.textContent).toBe("python");
    expect(code.querySelector(".hljs-keyword")!.textContent).toBe("def");
    expect(code.querySelector(".hljs-string")!.textContent).toBe("'a'");
    expect(code.querySelector(".hljs-comment")!.textContent).toBe("# note");
    expect(code.textContent).toBe("def f(x):\n    return 'a' # note\n");
    expect(box.querySelector(".cl-code-head button.cl-copy")).not.toBeNull();
  });

  it("keep only hljs classes and spans: markup in code stays text", () => {
    const box = render('```html\n<b onclick="x()">hi</b><script>alert(1)</script>\n```');
    expect(box.querySelector("b, script")).toBeNull();
    for (const el of Array.from(box.querySelectorAll("pre code *"))) {
      expect(el.tagName).toBe("SPAN");
      expect(el.getAttributeNames().filter((n) => n !== "class")).toEqual([]);
    }
    expect(box.querySelector("pre")!.textContent).toContain('<b onclick="x()">hi</b>');
  });

  it("a language class is kept only on <code> and only as language-NAME", () => {
    const box = document.createElement("div");
    box.innerHTML = '<pre><code class="language-js">x</code></pre>';
    expect(codeLanguage(box.querySelector("code")!)).toBe("js");
    const forged = render('<span class="language-js">a</span><code class="language-js cl-host">b</code><code class="language-js">c</code>');
    expect(forged.querySelector("span[class]")).toBeNull();
    const codes = Array.from(forged.querySelectorAll("code"));
    expect(codes.map((c) => c.getAttribute("class"))).toEqual([null, "language-js"]);
  });

  it("an unnamed block is still highlighted, and enhancing twice changes nothing", () => {
    const box = render("```\nfunction add(a, b) { return a + b; }\nconst x = add(1, 2);\n```");
    expect(box.querySelectorAll(".hljs-keyword").length).toBeGreaterThan(0);
    const html = box.innerHTML;
    expect(enhanceCode(box)).toEqual({ blocks: 0, plain: 0 });
    expect(box.innerHTML).toBe(html);
  });
});

describe("math", () => {
  it("renders $…$ and $$…$$ with KaTeX, MathML included", () => {
    const box = render("Euler: $e^{i\\pi} + 1 = 0$ and\n\n$$\n\\frac{a}{b}\n$$\n");
    const inline = box.querySelector("p .cl-math .katex")!;
    expect(inline).not.toBeNull();
    expect(inline.querySelector("math annotation")!.textContent).toBe("e^{i\\pi} + 1 = 0");
    const display = box.querySelector("div.cl-math-display .katex-display")!;
    expect(display.querySelector(".mfrac")).not.toBeNull();
    expect(box.textContent).not.toContain("\uE000");
  });

  it("leaves math in code alone", () => {
    const box = render("`$x$` and\n\n```\n$$\ny\n$$\n```");
    expect(box.querySelector(".cl-math")).toBeNull();
  });

  it("refuses links, URLs and raw HTML in TeX (trust off) and keeps styles to KaTeX's", () => {
    const box = render(
      "$\\href{javascript:alert(1)}{a}$ $\\url{https://evil.example}$ $\\includegraphics{https://evil.example/x.png}$ " +
        "$\\htmlClass{cl-host}{b}$ $\\htmlStyle{background:url(https://evil.example)}{c}$ $\\color{red}{d}$",
    );
    expect(box.querySelector("a, img, [href], [src]")).toBeNull();
    for (const el of Array.from(box.querySelectorAll("*"))) {
      for (const attr of Array.from(el.attributes)) expect(attr.value, attr.name).not.toMatch(/url\(|javascript:|evil/);
    }
    // the TeX source is kept only as text (the MathML annotation)
    expect(box.querySelector("annotation-xml")).toBeNull();
    expect(box.querySelector("annotation")!.textContent).toBe("\\href{javascript:alert(1)}{a}");
    expect(box.querySelector(".cl-host")).toBeNull();
    const styled = Array.from(box.querySelectorAll<HTMLElement>("[style]")).map((e) => e.getAttribute("style")!);
    expect(styled.some((s) => s.includes("color:red"))).toBe(true);
  });

  it("a forged placeholder is only text", () => {
    const box = render("\uE000abc:0\uE001 then $x$");
    expect(box.querySelectorAll(".cl-math").length).toBe(1);
    expect(box.textContent).toContain("\uE000abc:0\uE001");
  });

  it("cleanStyle keeps only plain values of KaTeX's properties", () => {
    expect(cleanStyle("height:1.2em;vertical-align:-0.25em;")).toBe("height:1.2em;vertical-align:-0.25em");
    expect(cleanStyle("background-image:url(x);color:red;position:fixed")).toBe("color:red");
    expect(cleanStyle("color:var(--x);width:calc(100% - 1em)")).toBe("width:calc(100% - 1em)");
  });
});

describe("copy", () => {
  it("uses the Clipboard API", async () => {
    const writes: string[] = [];
    setClipboard(async (t) => void writes.push(t));
    expect(await copyText("**md**")).toBe(true);
    expect(writes).toEqual(["**md**"]);
  });

  it("falls back to execCommand when the API refuses", async () => {
    setClipboard(async () => {
      throw new Error("NotAllowedError");
    });
    let selected = "";
    const exec = vi.fn(() => {
      selected = (document.activeElement as HTMLTextAreaElement | null)?.value ?? document.querySelector("textarea")?.value ?? "";
      return true;
    });
    Object.defineProperty(document, "execCommand", { value: exec, configurable: true });
    expect(await copyText("a `b`")).toBe(true);
    expect(exec).toHaveBeenCalledWith("copy");
    expect(selected).toBe("a `b`");
    expect(document.querySelector("textarea.cl-copy-buffer")).toBeNull();
  });
});

describe("turn controls", () => {
  const data: Json = fixture("turn.json");
  let sent: FrontendMessage[];
  let turn: TurnComponent;
  let busy: boolean;

  beforeEach(() => {
    sent = [];
    busy = false;
    turn = new TurnComponent({ send: (m) => sent.push(m), specs: () => ({}), busy: () => busy });
    document.body.append(turn.el);
  });

  afterEach(() => {
    for (const msg of sent) expect(check(msg, "FrontendMessage")).toEqual([]);
    turn.dispose();
    turn.el.remove();
  });

  const button = (action: string) => turn.el.querySelector<HTMLButtonElement>(`[data-action="${action}"]`);

  it("copy the answer's and a member's Markdown source", async () => {
    const writes: string[] = [];
    setClipboard(async (t) => void writes.push(t));
    const view = buildTurn(data, new StreamStore(), false);
    turn.update(view);
    turn.el.querySelector<HTMLButtonElement>('.cl-turn-actions .cl-copy')!.click();
    await vi.waitFor(() => expect(writes.length).toBe(1));
    expect(writes[0]).toBe(answerMarkdown(view));
    expect(writes[0]).toBe(view.iterations[view.iterations.length - 1].synthesis!.synthesis);
    const member = view.iterations[view.iterations.length - 1].members[0];
    turn.el.querySelector<HTMLButtonElement>(".cl-member .cl-member-head .cl-copy")!.click();
    await vi.waitFor(() => expect(writes.length).toBe(2));
    expect(writes[1]).toBe(member.answer);
  });

  it("regenerate always, retry only for a turn that did not complete, nothing while busy", () => {
    turn.update(buildTurn(data, new StreamStore(), false));
    expect(button("retry")).toBeNull();
    button("regenerate")!.click();
    expect(sent).toEqual([{ type: "resend", id: data.ui.run_id, mode: "regenerate" }]);
    turn.update(buildTurn({ ...data, ui: { ...data.ui, status: "failed" }, status: "failed" }, new StreamStore(), false));
    button("retry")!.click();
    expect(sent[1]).toEqual({ type: "resend", id: data.ui.run_id, mode: "retry" });
    busy = true;
    button("retry")!.click();
    expect(sent.length).toBe(2);
  });

  it("edit: the prompt in a box, sent as a new branch; empty cannot be sent", () => {
    turn.update(buildTurn(data, new StreamStore(), false));
    button("edit")!.click();
    const area = turn.el.querySelector<HTMLTextAreaElement>(".cl-edit-area")!;
    const box = turn.el.querySelector<HTMLElement>(".cl-edit-box")!;
    expect(box.hidden).toBe(false);
    expect(area.value).toBe(data.original_prompt);
    const sendEdited = box.querySelector<HTMLButtonElement>(".cl-primary")!;
    area.value = "  ";
    area.dispatchEvent(new Event("input"));
    expect(sendEdited.disabled).toBe(true);
    area.value = "Something else?";
    area.dispatchEvent(new Event("input"));
    sendEdited.click();
    expect(sent).toEqual([{ type: "resend", id: data.ui.run_id, mode: "edit", prompt: "Something else?" }]);
    expect(box.hidden).toBe(true);
  });
});
