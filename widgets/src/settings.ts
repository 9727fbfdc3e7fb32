// The settings panel: members, arbiter, mode, thresholds, iterations, saved configurations.
// Every edit is sent as a partial config; a refusal comes back as a notice shown at its field.

import { changed, field, h, setAttr, setText, uid } from "./dom";
import { formatModelSpec, type Json } from "./state";
import { MemberSettings, OptionsField } from "./memberSettings";
import { settingsFields, type SettingsFields } from "./settingsFields";
import type { Model, Send } from "./app";

const MODES = [
  ["consortium", "consortium — an arbiter synthesizes"],
  ["council", "council — peer ranking, then a chairman"],
  ["compare", "compare — members side by side"],
  ["vote", "vote — the most frequent answer wins, no arbiter"],
];

export class Settings {
  readonly el: HTMLDetailsElement;
  private summary: HTMLElement;
  private search: HTMLInputElement;
  private list: HTMLUListElement;
  private spec: HTMLInputElement;
  private summaryText: HTMLElement;
  private checked: SettingsFields;
  private arbiter: HTMLSelectElement;
  private mode: HTMLSelectElement;
  private threshold: HTMLInputElement;
  private minIt: HTMLInputElement;
  private maxIt: HTMLInputElement;
  private system: HTMLTextAreaElement;
  private streamToggle: HTMLInputElement;
  private saved: HTMLSelectElement;
  private saveName: HTMLInputElement;
  private members: MemberSettings;
  private arbiterOptions: OptionsField;
  /** set_config requests whose refusal (an error notice with their req) is shown inline. */
  private refusals = new Map<string, (message: string) => void>();
  private reqSeq = 0;

  constructor(
    private model: Model,
    private send: Send,
  ) {
    this.summaryText = h("span", { class: "cl-settings-summary-text" });
    this.summary = h("summary", { class: "cl-settings-summary" }, this.summaryText);
    this.search = h("input", { type: "search", placeholder: "Search models", autocomplete: "off" });
    this.search.oninput = () => this.renderModels();
    this.list = h("ul", { class: "cl-model-list", "aria-label": "Models" });
    this.spec = h("input", { type: "text", autocomplete: "off", spellcheck: "false" });
    this.arbiter = h("select");
    this.arbiter.onchange = () => this.apply({ arbiter: this.arbiter.value || null });
    this.mode = h("select");
    for (const [value, label] of MODES) this.mode.append(h("option", { value, text: label }));
    this.mode.onchange = () => this.apply({ mode: this.mode.value });
    // Typed as text, checked here (validate.ts): a number input hides what was typed when
    // it is not a number, and the refusal must name it.
    this.threshold = h("input", { type: "text", inputmode: "decimal", autocomplete: "off", "data-setting": "confidence_threshold" });
    this.minIt = h("input", { type: "text", inputmode: "numeric", autocomplete: "off", "data-setting": "minimum_iterations" });
    this.maxIt = h("input", { type: "text", inputmode: "numeric", autocomplete: "off", "data-setting": "max_iterations" });
    this.spec.dataset.setting = "models";
    this.checked = settingsFields(
      { spec: this.spec, threshold: this.threshold, minIt: this.minIt, maxIt: this.maxIt },
      () => this.config(),
      () => (this.model.get("models") ?? []).map((m: Json) => m.id),
      (partial, refuse) => this.apply(partial, refuse),
    );
    this.system = h("textarea", { rows: 2, placeholder: "Instructions sent to every member" });
    this.system.onchange = () => this.apply({ system_prompt: this.system.value || null });
    this.streamToggle = h("input", { type: "checkbox" });
    this.streamToggle.onchange = () => this.apply({ stream_individual_responses: this.streamToggle.checked });
    const streamId = uid("cl-stream");
    this.streamToggle.id = streamId;
    this.members = new MemberSettings((partial, onRefused) => this.apply(partial, onRefused));
    this.arbiterOptions = new OptionsField("the arbiter", "Arbiter options (JSON)", (value, f) =>
      this.apply({ arbiter_options: value ?? {} }, (message) => f.showError(message)),
    );

    this.saved = h("select");
    this.saveName = h("input", { type: "text", placeholder: "name", autocomplete: "off" });
    const load = h("button", { type: "button", class: "cl-btn cl-small", text: "Load" });
    load.onclick = () => this.saved.value && this.send({ type: "load_config", name: this.saved.value });
    const remove = h("button", { type: "button", class: "cl-btn cl-small cl-danger", text: "Remove" });
    remove.onclick = () => this.saved.value && this.send({ type: "remove_config", name: this.saved.value });
    const save = h("button", { type: "button", class: "cl-btn cl-small", text: "Save current as" });
    save.onclick = () => this.saveName.value && this.send({ type: "save_config", name: this.saveName.value.trim() });
    const clone = h("button", { type: "button", class: "cl-btn cl-small", text: "Clone selected as" });
    clone.onclick = () =>
      this.saved.value &&
      this.saveName.value &&
      this.send({ type: "clone_config", source: this.saved.value, target: this.saveName.value.trim() });
    load.setAttribute("aria-label", "Load the selected saved configuration");
    remove.setAttribute("aria-label", "Remove the selected saved configuration");
    save.setAttribute("aria-label", "Save the current configuration under the name given");
    clone.setAttribute("aria-label", "Clone the selected saved configuration under the name given");

    this.el = h(
      "details",
      { class: "cl-settings cl-panel" },
      this.summary,
      h(
        "div",
        { class: "cl-settings-grid" },
        h(
          "fieldset",
          { class: "cl-models" },
          h("legend", { text: "Members" }),
          field("Search models", this.search),
          this.list,
          withError(field("Members (model:count, comma separated)", this.spec, "e.g. gpt-4o-mini:2, claude-3.5-haiku"), this.checked.spec.error),
        ),
        h(
          "fieldset",
          { class: "cl-options" },
          h("legend", { text: "Arbiter and iterations" }),
          field("Arbiter", this.arbiter),
          this.arbiterOptions.el,
          field("Mode", this.mode),
          withError(field("Confidence threshold (0–1)", this.threshold), this.checked.threshold.error),
          withError(field("Minimum iterations", this.minIt), this.checked.minIt.error),
          withError(field("Maximum iterations", this.maxIt), this.checked.maxIt.error),
          field("System prompt", this.system),
          h(
            "div",
            { class: "cl-field cl-check" },
            this.streamToggle,
            h("label", { for: streamId, text: "Stream each member's answer live" }),
          ),
        ),
        this.members.el,
        h(
          "fieldset",
          { class: "cl-saved" },
          h("legend", { text: "Saved configurations" }),
          field("Saved configuration", this.saved),
          h("div", { class: "cl-row" }, load, remove),
          field("Name for save / clone", this.saveName),
          h("div", { class: "cl-row" }, save, clone),
        ),
      ),
    );
  }

  private config(): Json {
    return this.model.get("config") ?? {};
  }

  private apply(partial: Json, onRefused?: (message: string) => void): void {
    // Only the fields changed: the kernel merges them into its config in arrival order.
    if (!onRefused) {
      this.send({ type: "set_config", config: partial, merge: true });
      return;
    }
    const req = `settings-${++this.reqSeq}`;
    this.refusals.set(req, onRefused);
    if (this.refusals.size > 50) this.refusals.delete(this.refusals.keys().next().value as string);
    this.send({ type: "set_config", config: partial, merge: true, req });
  }

  /** A notice from the kernel about a settings edit: a refusal is shown at its field.
   * Returns whether it was (the page then shows no other notice of it). */
  onNotice(msg: Json): boolean {
    const show = this.refusals.get(msg?.req);
    if (!show) return false;
    this.refusals.delete(msg.req);
    if (msg.level !== "error") return false;
    show(String(msg.message ?? "refused"));
    return true;
  }

  render(): void {
    const c = this.config();
    const members = formatModelSpec(c.models ?? {});
    const arbiter = c.mode === "compare" || c.mode === "vote" ? "no arbiter" : `arbiter ${c.arbiter ?? Object.keys(c.models ?? {})[0] ?? "?"}`;
    // One line, cut with an ellipsis; the whole of it on hover.
    const summary = `Settings — ${members} · ${arbiter} · ${c.mode ?? "consortium"}`;
    setText(this.summaryText, summary);
    setAttr(this.summary, "title", summary);
    const active = this.el.ownerDocument?.activeElement;
    const setValue = (el: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement, v: string) => {
      if (active !== el && el.value !== v) el.value = v;
    };
    this.checked.spec.set(c.models ?? {});
    const models: Json[] = this.model.get("models") ?? [];
    const arbiterOptions = [h("option", { value: "", text: "(first member)" })];
    for (const m of models) arbiterOptions.push(h("option", { value: m.id, text: m.label }));
    const sig = models.map((m) => m.id).join(",");
    if (changed(this.arbiter, sig)) {
      this.arbiter.replaceChildren(...arbiterOptions);
    }
    setValue(this.arbiter, c.arbiter ?? "");
    setValue(this.mode, c.mode ?? "consortium");
    this.checked.threshold.set(c.confidence_threshold ?? 0.8);
    this.checked.minIt.set(c.minimum_iterations ?? 1);
    this.checked.maxIt.set(c.max_iterations ?? 3);
    setValue(this.system, c.system_prompt ?? "");
    this.streamToggle.checked = c.stream_individual_responses !== false;
    this.arbiterOptions.set(c.arbiter_options);
    this.members.render(c);
    const saved: Json[] = this.model.get("saved_configs") ?? [];
    const savedSig = saved.map((s) => `${s.name}:${s.ok}`).join(",");
    if (changed(this.saved, savedSig)) {
      const current = this.saved.value;
      this.saved.replaceChildren(
        h("option", { value: "", text: saved.length ? "(choose)" : "(none saved)" }),
        ...saved.map((s) => h("option", { value: s.name, text: s.ok ? s.name : `${s.name} (invalid)` })),
      );
      this.saved.value = saved.some((s) => s.name === current) ? current : "";
    }
    this.renderModels();
  }

  private renderModels(): void {
    const c = this.config();
    const chosen: Record<string, number> = c.models ?? {};
    const models: Json[] = this.model.get("models") ?? [];
    const q = this.search.value.trim().toLowerCase();
    const shown = models.filter(
      (m) =>
        !q ||
        m.id.toLowerCase().includes(q) ||
        m.label.toLowerCase().includes(q) ||
        (m.aliases ?? []).some((a: string) => a.toLowerCase().includes(q)),
    );
    const sig = `${q}|${shown.map((m) => m.id).join(",")}|${JSON.stringify(chosen)}`;
    if (!changed(this.list, sig)) return;
    const rows = shown.map((m) => {
      const box = h("input", { type: "checkbox", id: uid("cl-model") });
      box.checked = m.id in chosen;
      box.dataset.model = m.id;
      const count = h("input", {
        type: "number",
        min: 1,
        max: 16,
        step: 1,
        class: "cl-count",
        "aria-label": `Instances of ${m.id}`,
      });
      count.value = String(chosen[m.id] ?? 1);
      count.disabled = !(m.id in chosen);
      const update = () => {
        const next: Record<string, number> = { ...(this.config().models ?? {}) };
        // (models is sent whole: merging happens per top-level field)
        if (box.checked) next[m.id] = Math.max(1, Math.floor(Number(count.value) || 1));
        else delete next[m.id];
        this.apply({ models: next });
      };
      box.onchange = update;
      count.onchange = update;
      return h(
        "li",
        { class: m.demo ? "cl-model cl-demo" : "cl-model" },
        box,
        h("label", { for: box.id, text: m.label }),
        count,
      );
    });
    if (!rows.length) rows.push(h("li", { class: "cl-empty", text: "No model matches." }));
    this.list.replaceChildren(...rows);
  }
}

function withError(wrap: HTMLElement, error: HTMLElement): HTMLElement {
  wrap.append(error);
  return wrap;
}
