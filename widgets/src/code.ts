// Code blocks in model text: a header with the block's language and a copy button that copies
// the code's own text, and syntax highlighting by highlight.js (syntax.ts), which is loaded the
// first time a block shows. Until it has loaded, a block is shown as its plain (sanitised)
// text, with its header and copy button; sanitize.ts renders the text again once it is there.

import { copyButton } from "./actions";
import { h } from "./dom";
import { LazyModule } from "./lazy";

/** highlight.js with its languages, loaded on first use. */
export const syntax = new LazyModule("syntax highlighting", () => import("./syntax"));

/** The language a fenced block names (```py), from the class marked gives its <code>. */
export function codeLanguage(code: Element): string | null {
  const m = /(?:^|\s)language-([\w+#.-]+)/.exec(code.getAttribute("class") ?? "");
  return m ? m[1].toLowerCase() : null;
}

/** Give every code block under `root` a header with its language and a copy button, and
 * highlight it if highlight.js has loaded (else its loading starts). Returns how many blocks
 * were done and how many of them wait for highlight.js. */
export function enhanceCode(root: ParentNode): { blocks: number; plain: number } {
  const done = { blocks: 0, plain: 0 };
  const blocks = Array.from(root.querySelectorAll("pre > code")).filter(
    (code) => !code.parentElement!.parentElement?.classList.contains("cl-code"),
  );
  if (!blocks.length) return done;
  const highlighter = syntax.current();
  for (const code of blocks) {
    const pre = code.parentElement as HTMLPreElement;
    const text = code.textContent ?? "";
    let language = codeLanguage(code);
    if (highlighter) {
      const result = highlighter.highlightCode(text, language);
      code.replaceChildren(result.fragment);
      code.className = "hljs";
      language = result.language;
    } else {
      done.plain += 1;
    }
    const box = h(
      "div",
      { class: "cl-code" },
      h(
        "div",
        { class: "cl-code-head" },
        h("span", { class: "cl-code-lang", text: language ?? "code" }),
        copyButton("Copy code", () => text),
      ),
    );
    pre.replaceWith(box);
    box.append(pre);
    done.blocks += 1;
  }
  return done;
}
