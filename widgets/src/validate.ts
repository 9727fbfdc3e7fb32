// Inline validation of the settings panel: each value is checked as it is committed, a refused
// value is told at its field in plain words (the same words as the kernel's
// `widget/settings.py`, which refuses what gets past here), the field keeps focus and stays
// marked invalid with the value still in effect named, until it is fixed. Nothing is sent
// while a field is invalid, so the config in effect never changes through a bad value.

import { h, setAttr, setText } from "./dom";

/** How soon after a value is sent its refusal by the kernel still brings focus back. */
export const REFOCUS_MS = 3000;

export type Checked<T> = { ok: true; value: T } | { ok: false; error: string };

export const THRESHOLD_RULE = "Threshold must be between 0 and 1, or a percentage up to 100";
export const THRESHOLD_ZERO = "A threshold of 0 means the first answer will always be accepted.";

/** A number typed by a person: digits with an optional sign and decimal point, nothing else. */
function number(text: string): number | null {
  const t = text.trim();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t)) return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : null;
}

/** A confidence threshold: [0, 1] as is, (1, 100] as a percentage (as the kernel reads it). */
export function checkThreshold(text: string): Checked<number> {
  const n = number(text);
  if (n === null || n < 0 || n > 100) return { ok: false, error: THRESHOLD_RULE };
  return { ok: true, value: n };
}

/** A count of iterations: a whole number of at least 1. `label` starts the message. */
export function checkIterations(text: string, label: string): Checked<number> {
  const n = number(text);
  if (n === null || !Number.isInteger(n) || n < 1) {
    return { ok: false, error: `${label} must be a whole number of at least 1` };
  }
  return { ok: true, value: n };
}

/** The minimum and maximum of iterations together (null when they fit). */
export function orderProblem(minimum: number, maximum: number): string | null {
  return minimum > maximum
    ? `Minimum iterations (${minimum}) cannot be more than maximum iterations (${maximum})`
    : null;
}

/** The members typed as "model:count, model": at least one, each count a whole number ≥ 1. */
export function checkMembers(text: string): Checked<string> {
  const items = text
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter(Boolean);
  if (!items.length) return { ok: false, error: "Members need at least one model, e.g. gpt-4o-mini:2, claude-3.5-haiku" };
  for (const item of items) {
    const m = /^(.*):\s*(-?\d+(?:\.\d*)?)$/.exec(item);
    if (m && (!Number.isInteger(Number(m[2])) || Number(m[2]) < 1)) {
      return { ok: false, error: `Members: the count of ${m[1].trim() || "a model"} must be a whole number of at least 1` };
    }
    if (m && !m[1].trim()) return { ok: false, error: `Members: "${item}" names no model` };
  }
  return { ok: true, value: text };
}

export interface FieldCheck<T> {
  /** Check the text of the field: the value to send, or what is wrong. */
  check(text: string): Checked<T>;
  /** Send a valid value; `refuse` shows the kernel's refusal at the field. */
  commit(value: T, refuse: (message: string) => void): void;
  /** How the value in effect reads in the field (and in "still …"). */
  format(value: unknown): string;
  /** A question to confirm before sending this value (null: none needed). */
  confirm?(value: T): string | null;
}

/** An input of the settings panel with its inline error (and confirmation, when asked). */
export class ValidatedField<T> {
  readonly error: HTMLElement;
  private message: HTMLElement;
  private confirmBox: HTMLElement;
  private pending: T | null = null;
  private inEffect: unknown = undefined;
  private sentAt = 0;
  /** While true a config update does not overwrite what the person typed. */
  invalid = false;

  constructor(
    readonly input: HTMLInputElement | HTMLTextAreaElement,
    private rules: FieldCheck<T>,
  ) {
    const id = input.id || `${Math.random().toString(36).slice(2)}-field`;
    input.id = id;
    this.message = h("span", { class: "cl-field-error-text" });
    const yes = h("button", { type: "button", class: "cl-btn cl-small", "data-action": "confirm", text: "Use it" });
    const no = h("button", { type: "button", class: "cl-btn cl-small", "data-action": "cancel", text: "Cancel" });
    yes.onclick = () => this.confirmed(true);
    no.onclick = () => this.confirmed(false);
    this.confirmBox = h("span", { class: "cl-confirm", hidden: true }, yes, no);
    this.error = h("div", { id: `${id}-error`, class: "cl-field-error", role: "alert", hidden: true }, this.message, this.confirmBox);
    const described = input.getAttribute("aria-describedby");
    input.setAttribute("aria-describedby", described ? `${described} ${this.error.id}` : this.error.id);
    input.addEventListener("change", () => this.commit());
  }

  /** Check the field's text; send it when valid (after confirmation when asked). */
  commit(): boolean {
    const checked = this.rules.check(this.input.value);
    if (!checked.ok) {
      this.refuse(checked.error);
      return false;
    }
    const question = this.rules.confirm?.(checked.value) ?? null;
    if (question) {
      this.pending = checked.value;
      this.show(question, true);
      return false;
    }
    this.send(checked.value);
    return true;
  }

  /** Show a refusal at the field: marked invalid until fixed. Checked here, as focus leaves,
   * the field takes focus back; refused by the kernel, it does too when the answer comes
   * soon after leaving (REFOCUS_MS) or nothing else has focus, never pulling focus from a
   * field someone has been typing in for a while. */
  refuse(error: string, here = true): void {
    const still = this.inEffect === undefined ? "" : ` (still ${this.rules.format(this.inEffect)})`;
    this.show(`${error}${still}.`, false);
    const doc = this.input.ownerDocument;
    const idle = !doc.activeElement || doc.activeElement === doc.body;
    if (here || idle || Date.now() - this.sentAt < REFOCUS_MS) this.input.focus();
  }

  /** The value in effect (from the config): shown unless the field is being edited or refused. */
  set(value: unknown): void {
    this.inEffect = value;
    if (this.invalid || this.pending !== null) return;
    if (this.input.ownerDocument?.activeElement === this.input) return;
    const text = this.rules.format(value);
    if (this.input.value !== text) this.input.value = text;
  }

  private confirmed(yes: boolean): void {
    const value = this.pending;
    this.pending = null;
    if (yes && value !== null) this.send(value);
    else this.reset();
  }

  /** Back to the value in effect, nothing marked. */
  reset(): void {
    this.pending = null;
    this.show("", false);
    if (this.inEffect !== undefined) this.input.value = this.rules.format(this.inEffect);
  }

  private send(value: T): void {
    this.sentAt = Date.now();
    this.show("", false);
    this.rules.commit(value, (message) => this.refuse(message, false));
  }

  private show(text: string, confirm: boolean): void {
    this.invalid = !!text && !confirm;
    this.error.hidden = !text;
    this.error.classList.toggle("cl-field-question", confirm);
    this.confirmBox.hidden = !confirm;
    setText(this.message, text);
    setAttr(this.input, "aria-invalid", this.invalid ? "true" : null);
  }
}
