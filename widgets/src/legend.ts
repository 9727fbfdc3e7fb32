// Agreement highlighting's toggle and legend. The marks are always in the member answers
// (highlight.ts); the toggle only chooses which show, through `data-highlight` on the chat's
// root: off, agreement (what members share) or disagreement (what one member alone says).
// Off by default on a phone, where marks crowd a narrow column; the choice is remembered.

import { h } from "./dom";
import { remember, remembered } from "./theme";

export type HighlightMode = "off" | "agreement" | "disagreement";
export const HIGHLIGHT_KEY = "consortium-lab.highlight";
export const PHONE_QUERY = "(max-width: 600px)";
const MODES: [HighlightMode, string][] = [
  ["off", "Off"],
  ["agreement", "Agreement"],
  ["disagreement", "Disagreement"],
];

/** What each mode marks, as the legend says it (a swatch of the mark's own class). */
export const LEGEND: Record<HighlightMode, [string, string][]> = {
  off: [],
  agreement: [
    ["shared", "said by several members"],
    ["refinement", "touches a refinement area"],
  ],
  disagreement: [
    ["unique", "said by this member only"],
    ["refinement", "touches a refinement area"],
  ],
};

export function defaultHighlight(phone: boolean): HighlightMode {
  return phone ? "off" : "agreement";
}

export class HighlightControl {
  readonly el: HTMLElement;
  mode: HighlightMode;
  private buttons: HTMLButtonElement[];
  private legend: HTMLElement;

  constructor(private root: HTMLElement) {
    const win = root.ownerDocument.defaultView;
    const phone = !!win?.matchMedia?.(PHONE_QUERY).matches;
    this.mode = remembered(win, HIGHLIGHT_KEY, MODES.map(([m]) => m)) ?? defaultHighlight(phone);
    this.buttons = MODES.map(([mode, label]) => {
      const b = h("button", { type: "button", class: "cl-btn cl-small", "data-highlight-mode": mode, text: label });
      b.onclick = () => {
        remember(win, HIGHLIGHT_KEY, mode);
        this.set(mode);
      };
      return b;
    });
    this.legend = h("span", { class: "cl-legend", "aria-label": "Legend" });
    this.el = h(
      "span",
      { class: "cl-view-control cl-highlight-control" },
      h("span", { role: "group", "aria-label": "Highlight", class: "cl-segmented" }, h("span", { text: "Highlight" }), ...this.buttons),
      this.legend,
    );
    this.set(this.mode);
  }

  set(mode: HighlightMode): void {
    this.mode = mode;
    this.root.dataset.highlight = mode;
    for (const b of this.buttons) b.setAttribute("aria-pressed", String(b.dataset.highlightMode === mode));
    this.legend.hidden = mode === "off";
    this.legend.replaceChildren(
      ...LEGEND[mode].map(([kind, text]) =>
        h("span", { class: "cl-legend-item" }, h("mark", { class: `cl-hl cl-hl-${kind}`, text: "Aa" }), ` ${text}`),
      ),
    );
  }
}
