// The theme switch: light, dark, or system (the default: follows the browser's
// prefers-color-scheme, live). The choice is remembered in localStorage; the resolved theme is
// `data-theme` on the chat's root, where styles.css defines each palette once.

import { h } from "./dom";

export type ThemeChoice = "system" | "light" | "dark";
export const THEME_KEY = "consortium-lab.theme";
const CHOICES: [ThemeChoice, string][] = [
  ["system", "System"],
  ["light", "Light"],
  ["dark", "Dark"],
];

/** A remembered value of `key` among `allowed`, or null (storage may be refused). */
export function remembered<T extends string>(win: Window | null, key: string, allowed: readonly T[]): T | null {
  try {
    const value = win?.localStorage.getItem(key);
    return allowed.includes(value as T) ? (value as T) : null;
  } catch {
    return null;
  }
}

export function remember(win: Window | null, key: string, value: string): void {
  try {
    win?.localStorage.setItem(key, value);
  } catch {
    // private windows may refuse storage: the choice then lasts for this page only
  }
}

/** The theme shown for a choice, given whether the browser prefers dark. */
export function resolveTheme(choice: ThemeChoice, prefersDark: boolean): "light" | "dark" {
  return choice === "system" ? (prefersDark ? "dark" : "light") : choice;
}

export class ThemeSwitch {
  readonly el: HTMLElement;
  readonly select: HTMLSelectElement;
  choice: ThemeChoice;
  private media: MediaQueryList | null;
  private onMedia = () => this.apply();

  constructor(private root: HTMLElement) {
    const win = root.ownerDocument.defaultView;
    this.choice = remembered(win, THEME_KEY, CHOICES.map(([c]) => c)) ?? "system";
    this.media = win?.matchMedia?.("(prefers-color-scheme: dark)") ?? null;
    this.media?.addEventListener?.("change", this.onMedia);
    this.select = h("select", { class: "cl-theme-select", "data-action": "theme", "aria-label": "Theme" });
    for (const [value, label] of CHOICES) this.select.append(h("option", { value, text: label }));
    this.select.value = this.choice;
    this.select.onchange = () => {
      this.choice = this.select.value as ThemeChoice;
      remember(win, THEME_KEY, this.choice);
      this.apply();
    };
    this.el = h("label", { class: "cl-view-control" }, h("span", { text: "Theme" }), this.select);
    this.apply();
  }

  apply(): void {
    this.root.dataset.themeChoice = this.choice;
    this.root.dataset.theme = resolveTheme(this.choice, !!this.media?.matches);
  }

  dispose(): void {
    this.media?.removeEventListener?.("change", this.onMedia);
  }
}
