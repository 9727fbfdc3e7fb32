// The pre-run cost estimate shown next to the Send button: "about 12 calls, ~$0.04 at most".
//
// Asked for (`estimate {prompt, req}`) a short while after the draft prompt or the config last
// changed, never per keystroke; the kernel answers `estimate {req, summary, calls, max_cost,
// currency, unpriced_models}`. Only the answer to the latest request is shown; an answer with
// an error (or no summary) shows nothing. Typing is never blocked: requests are timers and
// messages, nothing waits for an answer.

import { debounce, h, setAttr, setText, uid, type Debounced } from "./dom";
import type { EstimateRequest } from "./messages.gen";

export const ESTIMATE_DELAY_MS = 300;

export interface EstimateReply {
  type: "estimate";
  req?: unknown;
  summary?: unknown;
  calls?: unknown;
  max_cost?: unknown;
  currency?: unknown;
  unpriced_models?: unknown;
  error?: unknown;
}

export class EstimateBox {
  readonly el: HTMLElement;
  private debounced: Debounced;
  private seq = 0;
  private disposed = false;

  constructor(
    private send: (msg: EstimateRequest) => void,
    /** The draft prompt, read when the request is sent (not when it is scheduled). */
    private prompt: () => string,
    readonly delay: number = ESTIMATE_DELAY_MS,
  ) {
    this.debounced = debounce(() => this.request(), delay);
    this.el = h("span", {
      id: uid("cl-estimate"),
      class: "cl-estimate",
      "data-state": "none",
      hidden: true,
    });
  }

  /** The prompt or the config changed: ask again once nothing changed for `delay` ms. */
  schedule(): void {
    if (this.disposed) return;
    this.debounced();
  }

  private request(): void {
    if (this.disposed) return;
    this.seq += 1;
    setAttr(this.el, "data-state", "pending");
    try {
      this.send({ type: "estimate", prompt: this.prompt(), req: `estimate-${this.seq}` });
    } catch {
      this.show("");
    }
  }

  /** An `estimate` answer from the kernel; stale answers (to an earlier request) are ignored.
   * Returns whether it was shown. */
  onReply(msg: EstimateReply): boolean {
    if (this.disposed || msg.req !== `estimate-${this.seq}`) return false;
    const summary = !msg.error && typeof msg.summary === "string" ? msg.summary : "";
    this.show(summary, msg);
    return true;
  }

  private show(summary: string, msg?: EstimateReply): void {
    setText(this.el, summary);
    this.el.hidden = !summary;
    setAttr(this.el, "data-state", summary ? "shown" : msg?.error ? "error" : "none");
    setAttr(this.el, "data-calls", summary && typeof msg?.calls === "number" ? String(msg.calls) : null);
    setAttr(
      this.el,
      "data-max-cost",
      summary && typeof msg?.max_cost === "number" ? String(msg.max_cost) : null,
    );
    setAttr(
      this.el,
      "title",
      summary
        ? "Estimated before the run: the most this prompt can take if every iteration runs " +
            "and every call writes its full output cap."
        : null,
    );
  }

  dispose(): void {
    this.disposed = true;
    this.debounced.cancel();
  }
}
