// KaTeX and the sanitiser of its output: loaded by math.ts (import()) the first time model text
// holds a formula.
//
// KaTeX's output needs what the model-text policy of sanitize.ts forbids (class, style,
// MathML, SVG), so it goes through its own DOMPurify instance: KaTeX's elements and class
// names, inline styles limited to the properties KaTeX writes, no URL and no event handler.
// KaTeX runs with trust: false (no \href, \url, \includegraphics, \htmlClass…) and bounded
// sizes and macro expansion.

import DOMPurify, { type Config } from "dompurify";
import katex from "katex";
// In the one-file bundle this CSS (fonts inlined) joins widget.css, which anywidget injects.
// The split bundle (build.mjs) drops this import and builds the CSS as katex-HASH.css of its
// own, linked below when this module first runs.
import "katex/dist/katex.min.css";

// The split bundle's katex.css by its content-hashed name (build.mjs defines it there).
declare const __KATEX_CSS__: string | undefined;

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

/** KaTeX's sanitised output for one formula (a fragment to put in the formula's wrapper). */
export function typeset(tex: string, display: boolean): DocumentFragment {
  const html = katex.renderToString(tex, { ...KATEX_OPTIONS, displayMode: display });
  return purifier.sanitize(html, MATH_CONFIG) as unknown as DocumentFragment;
}

/** The split bundle's katex.css, linked once beside the page's widget.css: settles when it
 * has loaded (or failed to), so that no formula shows unstyled. */
function linkStylesheet(): Promise<void> {
  if (typeof __KATEX_CSS__ === "undefined" || typeof document === "undefined") return Promise.resolve();
  let link = document.head.querySelector<HTMLLinkElement>('link[data-cl-bundle="katex"]');
  if (!link) {
    link = document.createElement("link");
    link.rel = "stylesheet";
    link.dataset.clBundle = "katex";
    const settled = () => (link!.dataset.state = "settled");
    link.addEventListener("load", settled, { once: true });
    link.addEventListener("error", settled, { once: true });
    link.href = new URL(__KATEX_CSS__, import.meta.url).href;
    document.head.append(link);
  }
  const el = link;
  if (el.dataset.state === "settled") return Promise.resolve();
  return new Promise((settle) => {
    el.addEventListener("load", () => settle(), { once: true });
    el.addEventListener("error", () => settle(), { once: true });
  });
}

/** Settles once KaTeX's CSS is in the page (at once where it is part of widget.css). */
export const stylesheet = linkStylesheet();
