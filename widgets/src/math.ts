// Math in model text: $…$ and $$…$$, typeset by KaTeX (typeset.ts, bundled; nothing comes
// from a CDN), which is loaded the first time a formula shows. Until it has loaded, a formula
// is shown as its TeX source between its delimiters; sanitize.ts renders the text again once
// KaTeX is there.
//
// KaTeX's output needs what the model-text policy of sanitize.ts forbids (class, style,
// MathML, SVG), so a formula is rendered after that policy has run: marked (with the
// tokenizers of marked-katex-extension) leaves a placeholder holding a per-render random nonce
// where each formula was, and the sanitised DOM then gets the formula in its place, KaTeX's
// output through typeset.ts's own sanitiser. (build.mjs keeps the extension's own KaTeX
// renderer, replaced here, out of the bundle's first file.)

import type { MarkedExtension, Tokens } from "marked";
import markedKatex from "marked-katex-extension";
import { LazyModule } from "./lazy";

/** KaTeX and its sanitiser, loaded on first use. */
export const katex = new LazyModule("math typesetting (KaTeX)", async () => {
  const typeset = await import("./typeset");
  await typeset.stylesheet;
  return typeset;
});

interface Formula {
  tex: string;
  display: boolean;
  raw: string;
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

function placeholder(formula: Formula): string {
  formulas.push(formula);
  return `${MARK_OPEN}${nonce}:${formulas.length - 1}${MARK_CLOSE}`;
}

/** marked-katex-extension's tokenizers, with placeholders in place of its renderers. */
export function mathExtension(): MarkedExtension {
  const ext = markedKatex();
  for (const e of ext.extensions ?? []) {
    const block = "level" in e && e.level === "block";
    (e as { renderer?: (t: Tokens.Generic) => string }).renderer = (token) =>
      placeholder({ tex: String(token.text), display: Boolean(token.displayMode), raw: String(token.raw).trim() }) +
      (block ? "\n" : "");
  }
  return ext;
}

type Typeset = typeof import("./typeset");

/** One formula: KaTeX's sanitised output, or without KaTeX its source as text (a span, or a
 * div for display math). */
function formulaElement(doc: Document, formula: Formula, typeset: Typeset | null): HTMLElement {
  const wrap = doc.createElement(formula.display ? "div" : "span");
  wrap.className = formula.display ? "cl-math cl-math-display" : "cl-math";
  if (typeset) wrap.append(typeset.typeset(formula.tex, formula.display));
  else wrap.textContent = formula.raw;
  return wrap;
}

const PLACEHOLDER = new RegExp(`${MARK_OPEN}([a-z0-9]+):(\\d+)${MARK_CLOSE}`, "g");

/** Replace this render's placeholders under `root` with their formulas. Returns how many
 * there were and how many of them are shown as source, waiting for KaTeX. */
export function renderMathIn(root: Node): { formulas: number; plain: number } {
  const done = { formulas: 0, plain: 0 };
  const doc = root.ownerDocument ?? (root as Document);
  const walker = doc.createTreeWalker(root, 4 /* NodeFilter.SHOW_TEXT */);
  const nodes: Text[] = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if ((n as Text).data.includes(MARK_OPEN)) nodes.push(n as Text);
  }
  const typeset = nodes.length ? katex.current() : null;
  for (const node of nodes) {
    const parts: Node[] = [];
    let last = 0;
    for (const m of node.data.matchAll(PLACEHOLDER)) {
      const formula = m[1] === nonce ? formulas[Number(m[2])] : undefined;
      if (!formula) continue; // not ours: left as the text it is
      parts.push(doc.createTextNode(node.data.slice(last, m.index)));
      parts.push(formulaElement(doc, formula, typeset));
      last = m.index! + m[0].length;
      done.formulas += 1;
      if (!typeset) done.plain += 1;
    }
    if (!parts.length) continue;
    parts.push(doc.createTextNode(node.data.slice(last)));
    node.replaceWith(...parts.filter((p) => !(p instanceof Text) || p.data));
  }
  return done;
}
