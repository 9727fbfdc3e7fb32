// Math in model text: $…$ and $$…$$ rendered with KaTeX (bundled; its fonts are inlined in
// widget.css by build.mjs, nothing comes from a CDN).
//
// KaTeX's output needs what the model-text policy of sanitize.ts forbids (class, style,
// MathML, SVG), so a formula is rendered after that policy has run: marked (with the
// tokenizers of marked-katex-extension) leaves a placeholder holding a per-render random nonce
// where each formula was, and the sanitised DOM then gets the formula's KaTeX output in its
// place. That output goes through its own DOMPurify instance: KaTeX's elements and class
// names, inline styles limited to the properties KaTeX writes, no URL and no event handler.
// KaTeX runs with trust: false (no \href, \url, \includegraphics, \htmlClass…) and bounded
// sizes and macro expansion.

import DOMPurify, { type Config } from "dompurify";
import katex from "katex";
import "katex/dist/katex.min.css";
import type { MarkedExtension, Tokens } from "marked";
import markedKatex from "marked-katex-extension";

export const KATEX_OPTIONS = {
  throwOnError: false,
  trust: false,
  strict: "ignore",
  maxSize: 20,
  maxExpand: 500,
  output: "htmlAndMathml",
} as const;

/** The inline style properties KaTeX writes (sizes, offsets, \color and \colorbox). */
const STYLE_PROPERTIES = new Set([
  "height", "width", "min-width", "max-width", "vertical-align", "top", "bottom", "left",
  "right", "margin", "margin-left", "margin-right", "margin-top", "margin-bottom",
  "padding", "padding-left", "padding-right", "padding-top", "padding-bottom",
  "border-bottom-width", "border-top-width", "border-right-width", "border-left-width",
  "border-width", "border-style", "border-color", "color", "background-color",
]);
// Lengths, numbers, colours (KaTeX validates colour names) and calc(): no url(), no var().
const STYLE_VALUE = /^(?:[-+0-9a-z.%#\s,]|calc\()+\)?$/i;
const CLASS_TOKEN = /^[a-z][a-z0-9-]*$/i;

const purifier = DOMPurify();
let hooked = false;

function installHooks(): void {
  if (hooked) return;
  hooked = true;
  purifier.addHook("uponSanitizeAttribute", (_node, data) => {
    const name = data.attrName.toLowerCase();
    if (name.startsWith("on") || /url\(|javascript:|data:|expression/i.test(data.attrValue)) {
      data.keepAttr = false;
    } else if (name === "style") {
      data.attrValue = cleanStyle(data.attrValue);
      data.keepAttr = data.attrValue !== "";
    } else if (name === "class") {
      data.attrValue = data.attrValue
        .split(/\s+/)
        .filter((c) => CLASS_TOKEN.test(c) && !c.startsWith("cl-"))
        .join(" ");
      data.keepAttr = data.attrValue !== "";
    }
  });
}

/** Only the declarations of STYLE_PROPERTIES whose value is plain. */
export function cleanStyle(style: string): string {
  return style
    .split(";")
    .map((decl) => {
      const i = decl.indexOf(":");
      if (i < 0) return "";
      const prop = decl.slice(0, i).trim().toLowerCase();
      const value = decl.slice(i + 1).trim();
      return STYLE_PROPERTIES.has(prop) && STYLE_VALUE.test(value) ? `${prop}:${value}` : "";
    })
    .filter(Boolean)
    .join(";");
}

const MATH_CONFIG: Config & { RETURN_DOM_FRAGMENT: true } = {
  USE_PROFILES: { html: true, mathMl: true, svg: true },
  // KaTeX's MathML carries the TeX source as a plain-text <annotation> (for screen readers
  // and copying); <annotation-xml>, which can hold HTML, stays forbidden.
  ADD_TAGS: ["semantics", "annotation"],
  ADD_ATTR: ["encoding"],
  FORBID_TAGS: [
    "a", "img", "image", "use", "foreignobject", "script", "style", "iframe", "form", "input",
    "button", "textarea", "select", "object", "embed", "link", "meta", "base", "video",
    "audio", "source", "picture", "template", "canvas", "noscript", "animate", "set",
    "animatemotion", "animatetransform", "filter", "feimage", "pattern", "mask", "maction",
  ],
  FORBID_ATTR: [
    "id", "name", "href", "xlink:href", "src", "srcset", "action", "formaction", "background",
    "poster", "ping", "data", "autofocus", "tabindex", "contenteditable", "mask", "filter",
  ],
  ALLOW_DATA_ATTR: false,
  ALLOW_UNKNOWN_PROTOCOLS: false,
  RETURN_DOM_FRAGMENT: true,
};

interface Formula {
  tex: string;
  display: boolean;
}

const MARK_OPEN = "\uE000";
const MARK_CLOSE = "\uE001";
let formulas: Formula[] = [];
let nonce = "";

/** Start rendering one text: placeholders from an earlier render stop matching. */
export function beginMath(): void {
  formulas = [];
  nonce = Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
}

function placeholder(tex: string, display: boolean): string {
  formulas.push({ tex, display });
  return `${MARK_OPEN}${nonce}:${formulas.length - 1}${MARK_CLOSE}`;
}

/** marked-katex-extension's tokenizers, with placeholders in place of its renderers. */
export function mathExtension(): MarkedExtension {
  const ext = markedKatex(KATEX_OPTIONS);
  for (const e of ext.extensions ?? []) {
    const block = "level" in e && e.level === "block";
    (e as { renderer?: (t: Tokens.Generic) => string }).renderer = (token) =>
      placeholder(String(token.text), Boolean(token.displayMode)) + (block ? "\n" : "");
  }
  return ext;
}

/** One formula as sanitised KaTeX output (a span, or a div for display math). */
export function renderFormula(doc: Document, tex: string, display: boolean): HTMLElement {
  installHooks();
  const html = katex.renderToString(tex, { ...KATEX_OPTIONS, displayMode: display });
  const wrap = doc.createElement(display ? "div" : "span");
  wrap.className = display ? "cl-math cl-math-display" : "cl-math";
  wrap.append(purifier.sanitize(html, MATH_CONFIG) as unknown as DocumentFragment);
  return wrap;
}

const PLACEHOLDER = new RegExp(`${MARK_OPEN}([a-z0-9]+):(\\d+)${MARK_CLOSE}`, "g");

/** Replace this render's placeholders under `root` with their formulas; returns how many. */
export function renderMathIn(root: Node): number {
  const doc = root.ownerDocument ?? (root as Document);
  const walker = doc.createTreeWalker(root, 4 /* NodeFilter.SHOW_TEXT */);
  const nodes: Text[] = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if ((n as Text).data.includes(MARK_OPEN)) nodes.push(n as Text);
  }
  let count = 0;
  for (const node of nodes) {
    const parts: Node[] = [];
    let last = 0;
    for (const m of node.data.matchAll(PLACEHOLDER)) {
      const formula = m[1] === nonce ? formulas[Number(m[2])] : undefined;
      if (!formula) continue; // not ours: left as the text it is
      parts.push(doc.createTextNode(node.data.slice(last, m.index)));
      parts.push(renderFormula(doc, formula.tex, formula.display));
      last = m.index! + m[0].length;
      count += 1;
    }
    if (!parts.length) continue;
    parts.push(doc.createTextNode(node.data.slice(last)));
    node.replaceWith(...parts.filter((p) => !(p instanceof Text) || p.data));
  }
  return count;
}
