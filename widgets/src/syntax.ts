// highlight.js (core and common languages) and the sanitiser of its markup: loaded by code.ts
// (import()) the first time model text holds a code block.
//
// The code's text is taken from the sanitised DOM; highlight.js escapes it while wrapping
// tokens in <span class="hljs-…">, and that markup goes through its own DOMPurify instance that
// keeps only spans and hljs- class names.

import DOMPurify, { type Config } from "dompurify";
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import c from "highlight.js/lib/languages/c";
import cpp from "highlight.js/lib/languages/cpp";
import csharp from "highlight.js/lib/languages/csharp";
import css from "highlight.js/lib/languages/css";
import diff from "highlight.js/lib/languages/diff";
import go from "highlight.js/lib/languages/go";
import java from "highlight.js/lib/languages/java";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import markdown from "highlight.js/lib/languages/markdown";
import python from "highlight.js/lib/languages/python";
import r from "highlight.js/lib/languages/r";
import ruby from "highlight.js/lib/languages/ruby";
import rust from "highlight.js/lib/languages/rust";
import shell from "highlight.js/lib/languages/shell";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";
import yaml from "highlight.js/lib/languages/yaml";

const LANGUAGES = {
  bash, c, cpp, csharp, css, diff, go, java, javascript, json, markdown, python, r, ruby, rust,
  shell, sql, typescript, xml, yaml,
};
for (const [name, lang] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, lang);

/** The languages highlighted (aliases such as js, py, sh, html, yml work too). */
export const HIGHLIGHTED_LANGUAGES = Object.keys(LANGUAGES);

const purifier = DOMPurify();
purifier.addHook("uponSanitizeAttribute", (_node, data) => {
  if (data.attrName === "class") {
    data.attrValue = data.attrValue
      .split(/\s+/)
      .filter((cls) => /^hljs-[a-z0-9_-]+$/i.test(cls) || /^(language_|function_|class_)$/.test(cls))
      .join(" ");
    data.keepAttr = data.attrValue !== "";
  } else {
    data.keepAttr = false;
  }
});
const CODE_CONFIG: Config & { RETURN_DOM_FRAGMENT: true } = {
  ALLOWED_TAGS: ["span"],
  ALLOWED_ATTR: ["class"],
  RETURN_DOM_FRAGMENT: true,
};

/** Highlighted, sanitised markup for `text` (a fragment of spans and text), and the language
 * it was highlighted as (the one named if highlight.js knows it, else a confident guess). */
export function highlightCode(text: string, language: string | null): { fragment: DocumentFragment; language: string | null } {
  const known = language && hljs.getLanguage(language) ? language : null;
  const result = known
    ? hljs.highlight(text, { language: known, ignoreIllegals: true })
    : hljs.highlightAuto(text, HIGHLIGHTED_LANGUAGES);
  const fragment = purifier.sanitize(result.value, CODE_CONFIG) as unknown as DocumentFragment;
  return { fragment, language: known ?? (result.relevance >= 5 ? result.language ?? null : null) };
}
