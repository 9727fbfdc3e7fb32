// The XSS corpus (tests/xss_payloads.txt) and the check that what a payload rendered to is
// inert: shared by sanitize.test.ts (code and math loaded) and lazy.test.ts (before they are).
import { readFileSync } from "node:fs";
import path from "node:path";
import { expect } from "vitest";
import { isHttpUrl } from "../src/sanitize";

const corpusPath = path.resolve(__dirname, "../../tests/xss_payloads.txt");
export const payloads = readFileSync(corpusPath, "utf8")
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

export function check(root: Element) {
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

