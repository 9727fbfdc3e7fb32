import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { isHttpUrl, renderMarkdown, renderMarkdownInto } from "../src/sanitize";

const corpusPath = path.resolve(__dirname, "../../tests/xss_payloads.txt");
const payloads = readFileSync(corpusPath, "utf8")
  .split("\n")
  .filter((line) => line.trim() && !line.startsWith("#"))
  .map((line) => line.replace(/\\n/g, "\n").replace(/\\t/g, "\t"));

const FORBIDDEN_TAGS = [
  "script", "style", "svg", "math", "iframe", "frame", "form", "input", "button", "textarea",
  "select", "object", "embed", "link", "meta", "base", "video", "audio", "source", "picture",
  "template", "canvas", "noscript", "marquee", "body",
];
const FORBIDDEN_ATTRS = [
  "style", "class", "id", "name", "src", "srcset", "background", "poster", "ping", "action",
  "formaction", "xlink:href", "data", "autofocus",
];

// What the page itself adds after sanitising: image notes, code blocks (highlight.js spans, a
// header with a copy button) and formulas (KaTeX's own markup, through its own profile).
const OUR_CLASS = /^(cl-(img-alt|code|code-head|code-lang|btn|small|copy|math|math-display)|hljs(-[\w-]+)?|language_|function_|class_|language-[\w+#.-]+)$/;

function inMath(el: Element): boolean {
  return !!el.closest(".cl-math");
}

function check(root: Element) {
  for (const tag of FORBIDDEN_TAGS) {
    for (const el of Array.from(root.querySelectorAll(tag))) {
      const ourButton = tag === "button" && el.classList.contains("cl-copy") && !!el.closest(".cl-code-head");
      const ourMath = (tag === "svg" || tag === "math") && inMath(el);
      expect(ourButton || ourMath, `${tag}: ${el.outerHTML.slice(0, 120)}`).toBe(true);
    }
  }
  for (const el of Array.from(root.querySelectorAll("*"))) {
    for (const attr of Array.from(el.attributes)) {
      const name = attr.name.toLowerCase();
      expect(name.startsWith("on"), `${el.tagName} ${name}`).toBe(false);
      const ourClass = name === "class" && (inMath(el) || attr.value.split(/\s+/).every((c) => OUR_CLASS.test(c)));
      const ourButton = el.tagName === "BUTTON" && ["type", "aria-label", "title"].includes(name);
      const mathStyle = name === "style" && inMath(el) && !/url|expression|var\(/i.test(attr.value);
      if (!ourClass && !ourButton && !mathStyle) expect(FORBIDDEN_ATTRS, `${el.tagName} ${name}`).not.toContain(name);
      expect(/javascript:|vbscript:|data:/i.test(attr.value), `${name}=${attr.value}`).toBe(false);
      if (name === "href") {
        expect(el.tagName).toBe("A");
        expect(isHttpUrl(attr.value)).toBe(true);
        expect(el.getAttribute("rel")).toBe("noopener noreferrer nofollow");
        expect(el.getAttribute("target")).toBe("_blank");
      }
    }
  }
}

describe("markdown sanitisation with the XSS corpus", () => {
  it("has at least 50 payloads", () => {
    expect(payloads.length).toBeGreaterThanOrEqual(50);
  });

  it.each(payloads.map((p, i) => [i + 1, p] as [number, string]))("payload %i is neutralised (string)", (_i, payload) => {
    const html = renderMarkdown(payload as string);
    const box = document.createElement("div");
    box.innerHTML = html;
    check(box);
    // no remote image can load: an <img> keeps no URL at all
    for (const img of Array.from(box.querySelectorAll("img"))) {
      expect(img.getAttributeNames().filter((n) => n !== "alt" && n !== "title" && n !== "role" && n !== "data-neutralised")).toEqual([]);
    }
  });

  it.each(payloads.map((p, i) => [i + 1, p] as [number, string]))("payload %i is neutralised (DOM)", (_i, payload) => {
    const box = document.createElement("div");
    renderMarkdownInto(box, payload as string);
    check(box);
    expect(box.querySelector("img")).toBeNull(); // images become their alt text
  });

  it("keeps ordinary markdown and plain links", () => {
    const html = renderMarkdown("# Title\n\n**bold** and [a link](https://example.org/x) `code`\n\n- one\n- two");
    const box = document.createElement("div");
    box.innerHTML = html;
    expect(box.querySelector("h1")?.textContent).toBe("Title");
    expect(box.querySelector("strong")?.textContent).toBe("bold");
    const a = box.querySelector("a")!;
    expect(a.getAttribute("href")).toBe("https://example.org/x");
    expect(a.getAttribute("rel")).toBe("noopener noreferrer nofollow");
    expect(a.getAttribute("referrerpolicy")).toBe("no-referrer");
    expect(box.querySelectorAll("li").length).toBe(2);
  });

  it("shows an image as its alt text", () => {
    const box = document.createElement("div");
    renderMarkdownInto(box, "see ![the chart](https://evil.example/c.png)");
    expect(box.textContent).toContain("[image: the chart]");
    expect(box.innerHTML).not.toContain("evil.example");
  });

  it("drops relative, protocol-relative and odd links", () => {
    for (const href of ["/x", "x.html", "//evil.example/x", "/\\evil.example", "mailto:a@b.c", "ftp://x/y", "#frag"]) {
      const box = document.createElement("div");
      box.innerHTML = renderMarkdown(`<a href="${href}">t</a>`);
      expect(box.querySelector("a")?.hasAttribute("href"), href).toBe(false);
    }
  });
});
