// Per-member settings of the settings panel: for each member (model id, or "model#instance"
// when a model runs several times) its llm options (a small JSON object) and its own system
// prompt, plus the arbiter's options. Options are checked here first (invalid JSON or not an
// object: an inline error naming the member, nothing sent); what passes goes through
// `set_config {merge: true}`, which merges per member and checks the options against the
// model's own llm options (a refusal comes back as a notice, shown inline as well).

import { changed, h, setAttr, setText, uid } from "./dom";

type Json = Record<string, any>;

export type ParsedOptions =
  | { ok: true; value: Record<string, unknown> | null }
  | { ok: false; error: string };

const EXAMPLE = '{"temperature": 0.2}';

function kind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "string") return "a string";
  return `a ${typeof value}`;
}

/** Options typed for `who`: an empty field is "no options" (`value: null`); otherwise the
 * text must be a JSON object. The error names `who` and what is wrong. */
export function parseOptions(text: string, who: string): ParsedOptions {
  const trimmed = text.trim();
  if (!trimmed) return { ok: true, value: null };
  let value: unknown;
  try {
    value = JSON.parse(trimmed);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return { ok: false, error: `Options for ${who}: not valid JSON (${reason}). Write an object such as ${EXAMPLE}.` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { ok: false, error: `Options for ${who} must be a JSON object such as ${EXAMPLE}, not ${kind(value)}.` };
  }
  return { ok: true, value: value as Record<string, unknown> };
}

/** How options are shown in their field ("" for none). */
export function formatOptions(options: unknown): string {
  if (!options || typeof options !== "object" || Object.keys(options).length === 0) return "";
  return JSON.stringify(options);
}

/** The keys that have an editor: each model id, then "model#i" for each instance of a model
 * that runs more than once; plus keys already set for a member ("model#1" of a single one). */
export function memberKeys(config: Json): string[] {
  const models: Record<string, number> = config.models ?? {};
  const set = new Set([...Object.keys(config.member_options ?? {}), ...Object.keys(config.member_system_prompts ?? {})]);
  const keys: string[] = [];
  for (const [model, count] of Object.entries(models)) {
    keys.push(model);
    const n = Math.max(1, Math.floor(Number(count) || 1));
    for (let i = 1; i <= n; i++) {
      const key = `${model}#${i}`;
      if (n > 1 || set.has(key)) keys.push(key);
    }
  }
  return keys;
}

/** A JSON options field with its inline error. */
export class OptionsField {
  readonly el: HTMLDivElement;
  readonly input: HTMLTextAreaElement;
  private error: HTMLElement;
  /** While the text is refused (here or by the kernel) a config update does not replace it. */
  private invalid = false;

  constructor(
    readonly who: string,
    label: string,
    private apply: (value: Record<string, unknown> | null, field: OptionsField) => void,
  ) {
    const id = uid("cl-options");
    this.input = h("textarea", {
      id,
      class: "cl-json",
      rows: 1,
      spellcheck: "false",
      autocomplete: "off",
      placeholder: EXAMPLE,
      "data-options-for": who,
    });
    this.error = h("div", { id: `${id}-error`, class: "cl-field-error", role: "alert", hidden: true });
    this.input.setAttribute("aria-describedby", this.error.id);
    this.input.onchange = () => this.commit();
    this.el = h("div", { class: "cl-field" }, h("label", { for: id, text: label }), this.input, this.error);
  }

  /** Validate the text; send it when it is valid. Returns whether it was. */
  commit(): boolean {
    const parsed = parseOptions(this.input.value, this.who);
    if (!parsed.ok) {
      this.showError(parsed.error);
      return false;
    }
    this.showError("");
    this.apply(parsed.value, this);
    return true;
  }

  showError(message: string): void {
    this.invalid = !!message;
    this.error.hidden = !message;
    setText(this.error, message);
    setAttr(this.input, "aria-invalid", message ? "true" : null);
  }

  /** The value held by the config (not shown over text being edited or refused). */
  set(options: unknown): void {
    const text = formatOptions(options);
    if (this.invalid || this.input.ownerDocument?.activeElement === this.input) return;
    if (this.input.value !== text) this.input.value = text;
  }
}

type Apply = (partial: Json, onRefused: (message: string) => void) => void;

class MemberEntry {
  readonly el: HTMLDetailsElement;
  readonly options: OptionsField;
  private system: HTMLTextAreaElement;
  private summary: HTMLElement;

  constructor(
    readonly key: string,
    apply: Apply,
  ) {
    const all = !key.includes("#");
    this.summary = h("summary");
    this.options = new OptionsField(key, `Options for ${key} (JSON)`, (value, field) =>
      apply({ member_options: { [key]: value } }, (message) => field.showError(message)),
    );
    this.system = h("textarea", { rows: 2, placeholder: all ? "Extra instructions for this model" : "Extra instructions for this instance" });
    this.system.dataset.systemPromptFor = key;
    const systemId = uid("cl-member-system");
    this.system.id = systemId;
    const systemError = h("div", { id: `${systemId}-error`, class: "cl-field-error", role: "alert", hidden: true });
    this.system.setAttribute("aria-describedby", systemError.id);
    this.system.onchange = () => {
      systemError.hidden = true;
      apply({ member_system_prompts: { [key]: this.system.value.trim() ? this.system.value : null } }, (message) => {
        systemError.hidden = false;
        setText(systemError, message);
      });
    };
    this.el = h(
      "details",
      { class: "cl-member-settings", "data-member": key },
      this.summary,
      this.options.el,
      h("div", { class: "cl-field" }, h("label", { for: systemId, text: `System prompt for ${key}` }), this.system, systemError),
    );
  }

  render(config: Json): void {
    const options = config.member_options?.[this.key];
    const prompt: string = config.member_system_prompts?.[this.key] ?? "";
    this.options.set(options);
    if (this.el.ownerDocument?.activeElement !== this.system && this.system.value !== prompt) this.system.value = prompt;
    const set = [formatOptions(options) ? "options" : "", prompt ? "system prompt" : ""].filter(Boolean);
    const what = this.key.includes("#") ? `instance ${this.key}` : `${this.key}${(config.models?.[this.key] ?? 1) > 1 ? " (all instances)" : ""}`;
    setText(this.summary, set.length ? `${what} — ${set.join(", ")}` : what);
  }
}

/** The fieldset of every member's options and system prompt. */
export class MemberSettings {
  readonly el: HTMLFieldSetElement;
  private list: HTMLElement;
  private entries = new Map<string, MemberEntry>();

  constructor(private apply: Apply) {
    this.list = h("div", { class: "cl-member-settings-list" });
    this.el = h(
      "fieldset",
      { class: "cl-per-member" },
      h("legend", { text: "Per-member options" }),
      h("small", {
        class: "cl-hint",
        text: `llm options as JSON, e.g. ${EXAMPLE}, and extra system prompts. An instance ("model#2") overrides its model's.`,
      }),
      this.list,
    );
  }

  render(config: Json): void {
    const keys = memberKeys(config);
    for (const [key, entry] of this.entries) {
      if (!keys.includes(key)) {
        entry.el.remove();
        this.entries.delete(key);
      }
    }
    const order = keys.map((key) => {
      let entry = this.entries.get(key);
      if (!entry) {
        entry = new MemberEntry(key, this.apply);
        this.entries.set(key, entry);
      }
      entry.render(config);
      return entry.el;
    });
    if (changed(this.list, keys.join("\u0000"))) this.list.replaceChildren(...order);
  }

  /** The options field of one member (for tests and the end-to-end checks). */
  field(key: string): OptionsField | undefined {
    return this.entries.get(key)?.options;
  }
}
