// The "for prompts like this: …" hint beside the model picker, with the number of similar past
// runs behind it; "Use these" applies it (the members, one instance each).
//
// Asked for (`recommend {prompt, req}`) a while after the draft prompt last changed, never per
// keystroke, and only while the model picker's panel is open (the kernel loads scikit-learn
// for its first answer: a chat whose settings stay closed never pays for it); the kernel answers `recommendation {req, message, members, support,
// enough_history}` from a worker thread. Only the answer to the latest request is shown. Not
// enough history shows the kernel's sentence and no button; an error or an empty prompt shows
// nothing. Nothing waits for an answer: typing and Send are never held up.

import "./recommend.css";
import { debounce, h, setAttr, setText, type Debounced } from "./dom";
import type { RecommendReply, RecommendRequest } from "./messages.gen";

export const RECOMMEND_DELAY_MS = 600;

export class RecommendBox {
  readonly el: HTMLElement;
  private text: HTMLElement;
  private useBtn: HTMLButtonElement;
  private members: string[] = [];
  private debounced: Debounced;
  private seq = 0;
  private disposed = false;
  private panel: HTMLDetailsElement | null = null;

  constructor(
    private send: (msg: RecommendRequest) => void,
    /** The draft prompt, read when the request is sent (not when it is scheduled). */
    private prompt: () => string,
    /** Use these members: `{model id: instances}`. */
    private apply: (models: Record<string, number>) => void,
    readonly delay: number = RECOMMEND_DELAY_MS,
  ) {
    this.debounced = debounce(() => this.request(), delay);
    this.text = h("span", { class: "cl-recommend-text" });
    this.useBtn = h("button", {
      type: "button",
      class: "cl-btn cl-small",
      "data-action": "use-recommendation",
      text: "Use these",
      hidden: true,
    });
    this.useBtn.onclick = () => {
      if (!this.members.length) return;
      this.apply(Object.fromEntries(this.members.map((m) => [m, 1])));
    };
    this.el = h(
      "div",
      { class: "cl-recommend", "data-state": "none", "aria-live": "polite", hidden: true },
      this.text,
      this.useBtn,
    );
  }

  /** Ask again whenever `input` changes (once it has not changed for `delay` ms) or `panel`
   * (the picker's folding panel) opens; nothing is asked while `panel` is closed. */
  attach(input: HTMLElement, panel?: HTMLDetailsElement): void {
    input.addEventListener("input", () => this.schedule());
    if (panel) {
      this.panel = panel;
      panel.addEventListener("toggle", () => panel.open && this.schedule());
    }
  }

  schedule(): void {
    if (this.disposed) return;
    this.debounced();
  }

  private request(): void {
    if (this.disposed || (this.panel && !this.panel.open)) return;
    this.seq += 1;
    const prompt = this.prompt();
    if (!prompt.trim()) {
      this.show(null);
      return;
    }
    setAttr(this.el, "data-state", "pending");
    try {
      this.send({ type: "recommend", prompt, req: `recommend-${this.seq}` });
    } catch {
      this.show(null);
    }
  }

  /** A `recommendation` from the kernel; stale answers are ignored. Returns whether shown. */
  onReply(msg: RecommendReply): boolean {
    if (this.disposed || msg.req !== `recommend-${this.seq}`) return false;
    this.show(msg.error ? null : msg);
    return true;
  }

  private show(msg: RecommendReply | null): void {
    const message = msg && typeof msg.message === "string" ? msg.message : "";
    const members = msg?.enough_history && Array.isArray(msg.members) ? msg.members.map(String) : [];
    this.members = members;
    setText(this.text, message);
    this.el.hidden = !message;
    this.useBtn.hidden = !members.length;
    this.useBtn.setAttribute(
      "aria-label",
      members.length ? `Use these members: ${members.join(", ")}` : "Use these members",
    );
    setAttr(this.el, "data-state", !message ? "none" : members.length ? "shown" : "no-history");
    setAttr(this.el, "data-support", msg && typeof msg.support === "number" ? String(msg.support) : null);
  }

  dispose(): void {
    this.disposed = true;
    this.debounced.cancel();
  }
}
