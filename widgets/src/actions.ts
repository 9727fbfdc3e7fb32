// The usual chat controls: copy (the Clipboard API, else a hidden textarea and
// execCommand("copy") on an insecure origin or a browser that refuses the API), regenerate,
// retry and edit-and-resend (a `resend` message; the kernel branches the conversation).

import { h } from "./dom";
import type { FrontendMessage } from "./messages.gen";
import type { TurnView } from "./state";

/** Put `text` on the clipboard; resolves to whether it worked. */
export async function copyText(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard?.writeText) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // refused (no permission, not a secure context): try the fallback
  }
  const area = h("textarea", { class: "cl-copy-buffer", readonly: true, "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  try {
    return document.execCommand("copy");
  } catch {
    return false;
  } finally {
    area.remove();
  }
}

/** A small "Copy" button that copies `text()` and says whether it did. */
export function copyButton(label: string, text: () => string): HTMLButtonElement {
  const button = h("button", { type: "button", class: "cl-btn cl-small cl-copy", "aria-label": label, title: label, text: "Copy" });
  let reset: ReturnType<typeof setTimeout> | undefined;
  button.onclick = async () => {
    const ok = await copyText(text());
    button.textContent = ok ? "Copied" : "Copy failed";
    button.dataset.copied = String(ok);
    clearTimeout(reset);
    reset = setTimeout(() => {
      button.textContent = "Copy";
      delete button.dataset.copied;
    }, 2000);
  };
  return button;
}

/** The final answer's Markdown source: the last synthesis (empty when there is none). */
export function answerMarkdown(v: TurnView): string {
  for (let i = v.iterations.length - 1; i >= 0; i--) {
    const s = v.iterations[i].synthesis;
    if (s?.synthesis) return s.synthesis;
  }
  return "";
}

/** Statuses a turn can be retried from. */
export const RETRYABLE = new Set(["failed", "cancelled", "interrupted"]);

/** The controls of a finished turn: copy the answer, regenerate, and retry when it did not
 * complete. Regenerate and retry start a new branch of the conversation (the kernel keeps
 * the old turn). */
export function turnControls(v: TurnView, send: (msg: FrontendMessage) => void, busy: () => boolean): HTMLElement[] {
  const out: HTMLElement[] = [];
  if (answerMarkdown(v)) out.push(copyButton("Copy the answer", () => answerMarkdown(v)));
  const resend = (mode: "regenerate" | "retry", label: string, text: string) => {
    const b = h("button", { type: "button", class: "cl-btn cl-small", "aria-label": label, title: label, text });
    b.dataset.action = mode;
    b.onclick = () => {
      if (!busy()) send({ type: "resend", id: v.runId, mode });
    };
    return b;
  };
  out.push(resend("regenerate", "Regenerate: same prompt and settings, a fresh answer (not from the cache)", "Regenerate"));
  if (RETRYABLE.has(v.status)) out.push(resend("retry", "Retry this turn", "Retry"));
  return out;
}

/** "Edit": the prompt in a text box; sending starts a new branch from this turn with the
 * edited prompt (the kernel keeps the old turn). */
export class PromptEditor {
  readonly button: HTMLButtonElement;
  readonly box: HTMLElement;
  private area: HTMLTextAreaElement;
  private sendButton: HTMLButtonElement;

  constructor(private send: (msg: FrontendMessage) => void, private busy: () => boolean) {
    this.button = h("button", { type: "button", class: "cl-btn cl-small cl-edit", "aria-label": "Edit this prompt", title: "Edit this prompt and ask it again (the old turn is kept)", text: "Edit" });
    this.button.dataset.action = "edit";
    this.area = h("textarea", { class: "cl-edit-area", "aria-label": "Edited prompt", rows: 3 });
    this.sendButton = h("button", { type: "button", class: "cl-btn cl-small cl-primary", text: "Ask again" });
    const cancel = h("button", { type: "button", class: "cl-btn cl-small", text: "Cancel" });
    this.box = h("div", { class: "cl-edit-box", hidden: true }, this.area, h("div", { class: "cl-edit-buttons" }, this.sendButton, cancel));
    cancel.onclick = () => this.close();
    this.area.addEventListener("input", () => this.refresh());
    this.area.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.stopPropagation();
        this.close();
      } else if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        this.sendButton.click();
      }
    });
  }

  /** Show the editor for turn `v` (its prompt as the starting text). */
  bind(v: TurnView): void {
    this.button.hidden = v.status === "running";
    this.button.onclick = () => {
      this.area.value = v.prompt;
      this.box.hidden = false;
      this.refresh();
      this.area.focus();
    };
    this.sendButton.onclick = () => {
      const prompt = this.area.value;
      if (!prompt.trim() || this.busy()) return;
      this.send({ type: "resend", id: v.runId, mode: "edit", prompt });
      this.close();
    };
  }

  private refresh(): void {
    this.sendButton.disabled = !this.area.value.trim();
  }

  private close(): void {
    this.box.hidden = true;
  }
}
