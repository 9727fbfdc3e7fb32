// Markdown for untrusted model text: marked renders, DOMPurify sanitises, and our hook
// removes every URL that could load something or leak the conversation.
//
// Policy (all model text — member answers, thought processes, syntheses, analysis, dissent,
// refinement areas — goes through renderMarkdown):
// - no script can run: DOMPurify removes scripts and event handlers; style, svg, math,
//   iframe, form controls, media, object/embed, link/meta/base and template are forbidden;
// - nothing remote is loaded: every attribute that holds a URL is removed, except `href` on
//   <a> when it is an absolute http(s) URL — those links get rel="noopener noreferrer
//   nofollow", target="_blank" and referrerpolicy="no-referrer" (a link loads nothing until
//   clicked). Images keep only their alt text (no src, no srcset), so a markdown image
//   cannot fetch a remote URL; data: and javascript: URLs are removed everywhere;
// - nothing can restyle or escape its pane: no style attribute or element, no class or id
//   (they could pick up or clobber the page's own rules and elements), and the panes use
//   CSS containment (see styles.css). The one exception: a <code> keeps a class naming its
//   language ("language-py", as marked writes it), for highlighting.
//
// After this policy, code blocks are highlighted (code.ts) and formulas rendered (math.ts),
// each through its own narrower DOMPurify profile. highlight.js and KaTeX load the first time
// a text needs them: until then code shows as plain text and a formula as its TeX source, and
// the text is rendered again when they arrive.

import DOMPurify from "dompurify";
import { Marked } from "marked";
import { enhanceCode, syntax } from "./code";
import { beginMath, katex, mathExtension, renderMathIn } from "./math";

const FORBID_TAGS = [
  "style", "script", "svg", "math", "iframe", "frame", "frameset", "form", "input", "button",
  "textarea", "select", "option", "object", "embed", "applet", "link", "meta", "base",
  "video", "audio", "source", "track", "picture", "canvas", "template", "dialog",
  "noscript", "portal", "fencedframe", "marquee", "image", "foreignobject",
];

const FORBID_ATTR = [
  "style", "class", "id", "name", "srcset", "src", "formaction", "action", "background",
  "poster", "ping", "xlink:href", "cite", "longdesc", "lowsrc", "dynsrc", "data", "codebase",
  "manifest", "usemap", "profile", "itemid", "itemtype", "attributionsrc", "imagesrcset",
  "imagesizes", "http-equiv", "content", "autofocus", "tabindex", "contenteditable", "slot",
  "popover", "popovertarget", "part", "is",
];

/** Attributes that may carry a URL: removed unless it is an allowed link. */
const URL_ATTRS = new Set([
  "href", "src", "srcset", "xlink:href", "action", "formaction", "poster", "background",
  "cite", "longdesc", "data", "codebase", "ping", "manifest", "usemap", "profile", "lowsrc",
  "dynsrc", "itemid", "itemtype", "attributionsrc",
]);

// Control characters and whitespace that browsers strip inside URLs before parsing them.
const URL_JUNK = /[\u0000-\u0020\u007f-\u009f\u00ad\u200b-\u200f\u2028\u2029\ufeff]/g;

/** True for an absolute http(s) URL (what a plain link may point to). */
export function isHttpUrl(value: string): boolean {
  const v = value.replace(URL_JUNK, "");
  if (!/^https?:\/\//i.test(v)) return false;
  try {
    const url = new URL(v);
    return (url.protocol === "http:" || url.protocol === "https:") && !!url.hostname;
  } catch {
    return false;
  }
}

let hooked = false;

function installHooks(): void {
  if (hooked) return;
  hooked = true;
  DOMPurify.addHook("uponSanitizeAttribute", (node, data) => {
    const name = data.attrName.toLowerCase();
    if (name === "class" && node.nodeName === "CODE" && /^language-[\w+#.-]{1,40}$/.test(data.attrValue)) {
      data.forceKeepAttr = true;
      return;
    }
    if (name.startsWith("on")) {
      data.keepAttr = false;
      return;
    }
    if (!URL_ATTRS.has(name)) {
      if (/(javascript|vbscript|data):/i.test(data.attrValue.replace(URL_JUNK, ""))) {
        data.keepAttr = false;
      }
      return;
    }
    const isLink = name === "href" && node.nodeName.toLowerCase() === "a";
    if (!isLink || !isHttpUrl(data.attrValue)) {
      data.keepAttr = false;
      return;
    }
    data.attrValue = data.attrValue.replace(URL_JUNK, "");
  });
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    const el = node as Element;
    if (!el.tagName) return;
    const tag = el.tagName.toLowerCase();
    if (tag === "a") {
      if (el.hasAttribute("href")) {
        el.setAttribute("target", "_blank");
        el.setAttribute("rel", "noopener noreferrer nofollow");
        el.setAttribute("referrerpolicy", "no-referrer");
      } else {
        el.removeAttribute("target");
      }
    }
    if (tag === "img") {
      // An image never loads: it shows as its alt text.
      el.removeAttribute("src");
      el.removeAttribute("srcset");
      el.setAttribute("role", "img");
      el.setAttribute("data-neutralised", "image");
    }
  });
}

const marked = new Marked({ gfm: true, breaks: false, async: false }, mathExtension());

const PURIFY_CONFIG = {
  FORBID_TAGS,
  FORBID_ATTR,
  ALLOW_DATA_ATTR: false,
  ALLOW_UNKNOWN_PROTOCOLS: false,
  SANITIZE_DOM: true,
  SANITIZE_NAMED_PROPS: true,
  USE_PROFILES: { html: true },
  KEEP_CONTENT: true,
  WHOLE_DOCUMENT: false,
};

/** Markdown -> sanitised HTML string (see the policy at the top of this file), with code and
 * math as plain text if highlight.js or KaTeX has not loaded yet. */
export function renderMarkdown(text: string): string {
  const box = document.createElement("div");
  renderMarkdownInto(box, text);
  return box.innerHTML;
}

/** Which render of each element is the latest: an older one is not redone. */
const renders = new WeakMap<HTMLElement, number>();
let serial = 0;

/** Render markdown into `el` (replacing its content) without re-parsing a string: sanitised,
 * then code highlighted and math rendered; `after` runs after each render (to mark it up
 * further). Returns null when the render is complete; else (code or math shown plain while
 * highlight.js or KaTeX loads) a promise that renders the text again once they have loaded,
 * unless `el` has been rendered anew since, and resolves with whether it did. */
export function renderMarkdownInto(el: HTMLElement, text: string, after?: () => void): Promise<boolean> | null {
  const id = ++serial;
  renders.set(el, id);
  const waiting = renderOnce(el, text);
  after?.();
  if (!waiting.length) return null;
  return Promise.all(waiting).then(
    () => {
      if (renders.get(el) !== id) return false;
      void renderMarkdownInto(el, text, after);
      return true;
    },
    (err: unknown) => {
      console.error(err);
      return false;
    },
  );
}

/** One render; returns the modules it waits for. */
function renderOnce(el: HTMLElement, text: string): Promise<unknown>[] {
  installHooks();
  beginMath();
  const html = marked.parse(text ?? "", { async: false }) as string;
  const fragment = DOMPurify.sanitize(html, {
    ...PURIFY_CONFIG,
    RETURN_DOM_FRAGMENT: true,
  }) as unknown as DocumentFragment;
  for (const img of Array.from(fragment.querySelectorAll("img"))) {
    // Shown as its alt text: an image in model output never loads anything.
    const note = document.createElement("span");
    note.className = "cl-img-alt";
    note.textContent = `[image${img.getAttribute("alt") ? `: ${img.getAttribute("alt")}` : ""}]`;
    img.replaceWith(note);
  }
  const waiting: Promise<unknown>[] = [];
  if (renderMathIn(fragment).plain) waiting.push(katex.ready());
  if (enhanceCode(fragment).plain) waiting.push(syntax.ready());
  el.replaceChildren(fragment);
  return waiting;
}
