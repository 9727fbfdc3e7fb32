// The chat's view: inline validation of the settings (validate.ts, settingsFields.ts), the
// theme switch (theme.ts), the agreement toggle and legend (legend.ts), members as tabs
// (tabs.ts), and the contrast of the agreement marks computed from view.css's own colours.
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import widget from "../src/index";
import { isDarkTheme } from "../src/charts";
import { HIGHLIGHT_KEY, HighlightControl, LEGEND, defaultHighlight } from "../src/legend";
import { MemberTabs } from "../src/tabs";
import { THEME_KEY, ThemeSwitch, resolveTheme } from "../src/theme";
import { THRESHOLD_RULE, checkIterations, checkMembers, checkThreshold, orderProblem } from "../src/validate";
import { chatState, FakeModel } from "./fakeModel";

function matchMedia(matches: Record<string, boolean>) {
  const listeners: (() => void)[] = [];
  const lists = new Map<string, any>();
  window.matchMedia = ((query: string) => {
    if (!lists.has(query)) {
      lists.set(query, {
        get matches() {
          return !!matches[query];
        },
        media: query,
        addEventListener: (_: string, cb: () => void) => listeners.push(cb),
        removeEventListener: () => {},
      });
    }
    return lists.get(query);
  }) as any;
  return {
    set(query: string, value: boolean) {
      matches[query] = value;
      for (const cb of listeners) cb();
    },
  };
}

beforeEach(() => {
  localStorage.clear();
  matchMedia({});
});

describe("checks of the settings' values", () => {
  it("takes a threshold from 0 to 1, or a percentage up to 100", () => {
    for (const ok of ["0", "0.8", "1", " .5 ", "85", "100"]) expect(checkThreshold(ok).ok, ok).toBe(true);
    expect(checkThreshold("85")).toEqual({ ok: true, value: 85 });
    for (const bad of ["", "-0.1", "101", "high", "0.8.1", "NaN", "Infinity", "1e3", "80%"]) {
      expect(checkThreshold(bad), bad).toEqual({ ok: false, error: THRESHOLD_RULE });
    }
  });

  it("takes whole iteration counts of at least 1, minimum not above maximum", () => {
    expect(checkIterations("3", "Maximum iterations")).toEqual({ ok: true, value: 3 });
    for (const bad of ["0", "-1", "2.5", "", "many"]) {
      expect(checkIterations(bad, "Maximum iterations"), bad).toEqual({
        ok: false,
        error: "Maximum iterations must be a whole number of at least 1",
      });
    }
    expect(orderProblem(2, 3)).toBeNull();
    expect(orderProblem(4, 2)).toBe("Minimum iterations (4) cannot be more than maximum iterations (2)");
  });

  it("takes members with whole counts of at least 1", () => {
    expect(checkMembers("a:2, b").ok).toBe(true);
    expect(checkMembers(" , ")).toMatchObject({ ok: false, error: expect.stringContaining("at least one model") });
    expect(checkMembers("a:0")).toEqual({ ok: false, error: "Members: the count of a must be a whole number of at least 1" });
    expect(checkMembers("a:1.5").ok).toBe(false);
    expect(checkMembers(":2")).toEqual({ ok: false, error: 'Members: ":2" names no model' });
  });
});

describe("the settings panel's inline validation", () => {
  let model: FakeModel;
  let el: HTMLElement;
  let dispose: () => void;
  const q = <T extends Element = HTMLElement>(sel: string) => el.querySelector(sel) as T;
  const errorOf = (input: HTMLElement) => document.getElementById(`${input.id}-error`)!;
  const said = (input: HTMLElement) => errorOf(input).querySelector(".cl-field-error-text")!.textContent;

  beforeEach(() => {
    vi.useFakeTimers();
    model = new FakeModel(chatState({ config: { ...chatState().config, confidence_threshold: 0.8, max_iterations: 3 } }));
    el = document.createElement("div");
    document.body.append(el);
    dispose = widget.render({ model, el });
  });
  afterEach(() => {
    dispose();
    el.remove();
    vi.useRealTimers();
  });

  const type = (input: HTMLInputElement, text: string) => {
    input.focus();
    input.value = text;
    input.dispatchEvent(new Event("change"));
  };
  const configSent = () => model.sent.filter((m) => m.type === "set_config");

  it("refuses a bad threshold at its field, sends nothing, keeps focus, names the value in effect", () => {
    const threshold = q<HTMLInputElement>('[data-setting="confidence_threshold"]');
    expect(threshold.value).toBe("0.8");
    const other = q<HTMLInputElement>('[data-setting="max_iterations"]');
    for (const bad of ["1.5e3", "-1", "high", "101"]) {
      type(threshold, bad);
      other.focus(); // moving on does not leave the bad value behind
      threshold.dispatchEvent(new Event("change"));
      expect(configSent(), bad).toEqual([]);
      expect(errorOf(threshold).hidden).toBe(false);
      expect(said(threshold)).toBe(`${THRESHOLD_RULE} (still 0.8).`);
      expect(threshold.getAttribute("aria-invalid")).toBe("true");
      expect(document.activeElement).toBe(threshold);
    }
    // a config update does not overwrite what is being fixed
    model.set("config", { ...model.get("config"), mode: "council" });
    vi.advanceTimersByTime(100);
    expect(threshold.value).toBe("101");
    type(threshold, "0.7");
    expect(configSent()).toEqual([
      { type: "set_config", config: { confidence_threshold: 0.7 }, merge: true, req: expect.any(String) },
    ]);
    expect(errorOf(threshold).hidden).toBe(true);
    expect(threshold.hasAttribute("aria-invalid")).toBe(false);
  });

  it("asks before a threshold of 0, and cancelling restores the value in effect", () => {
    const threshold = q<HTMLInputElement>('[data-setting="confidence_threshold"]');
    type(threshold, "0");
    expect(configSent()).toEqual([]);
    expect(errorOf(threshold).textContent).toContain("the first answer will always be accepted");
    errorOf(threshold).querySelector<HTMLButtonElement>('[data-action="cancel"]')!.click();
    expect(threshold.value).toBe("0.8");
    expect(errorOf(threshold).hidden).toBe(true);
    type(threshold, "0");
    errorOf(threshold).querySelector<HTMLButtonElement>('[data-action="confirm"]')!.click();
    expect(configSent().at(-1)).toMatchObject({ config: { confidence_threshold: 0 } });
  });

  it("refuses bad iteration counts, and a minimum above the maximum", () => {
    const min = q<HTMLInputElement>('[data-setting="minimum_iterations"]');
    const max = q<HTMLInputElement>('[data-setting="max_iterations"]');
    type(max, "0");
    expect(said(max)).toBe("Maximum iterations must be a whole number of at least 1 (still 3).");
    type(min, "2.5");
    expect(said(min)).toBe("Minimum iterations must be a whole number of at least 1 (still 1).");
    type(min, "5");
    expect(said(min)).toBe("Minimum iterations (5) cannot be more than maximum iterations (3) (still 1).");
    expect(configSent()).toEqual([]);
  });

  it("shows the kernel's refusal at the field, not as a notice", () => {
    const spec = q<HTMLInputElement>('[data-setting="models"]');
    type(spec, "nosuch");
    const sent = configSent().at(-1)!;
    expect(sent).toMatchObject({ config: { models: { nosuch: 1 } } });
    model.emit("msg:custom", { type: "notice", level: "error", message: "models: 'nosuch' is not installed", req: (sent as any).req });
    expect(said(spec)).toBe("models: 'nosuch' is not installed (still demo-analyst, demo-skeptic:2).");
    expect(spec.getAttribute("aria-invalid")).toBe("true");
    expect(el.querySelectorAll(".cl-notice")).toHaveLength(0);
  });

  it("describes each checked field by its hint and its error", () => {
    const spec = q<HTMLInputElement>('[data-setting="models"]');
    const ids = spec.getAttribute("aria-describedby")!.split(" ");
    expect(ids).toEqual([`${spec.id}-hint`, `${spec.id}-error`]);
    expect(q<HTMLInputElement>('[data-setting="confidence_threshold"]').getAttribute("aria-describedby")).toMatch(/-error$/);
  });

  it("cuts the summary line, with the whole of it on hover", () => {
    const summary = q(".cl-settings-summary");
    expect(summary.getAttribute("title")).toBe(summary.textContent);
    expect(summary.title).toContain("demo-analyst, demo-skeptic:2 · arbiter demo-arbiter · consortium");
  });
});

describe("theme switch", () => {
  it("follows prefers-color-scheme by default, live, and remembers a choice", () => {
    const media = matchMedia({ "(prefers-color-scheme: dark)": false });
    const root = document.createElement("div");
    const theme = new ThemeSwitch(root);
    expect([theme.choice, root.dataset.theme]).toEqual(["system", "light"]);
    media.set("(prefers-color-scheme: dark)", true);
    expect(root.dataset.theme).toBe("dark");
    theme.select.value = "light";
    theme.select.dispatchEvent(new Event("change"));
    expect(root.dataset.theme).toBe("light");
    expect(localStorage.getItem(THEME_KEY)).toBe("light");
    const again = document.createElement("div");
    new ThemeSwitch(again);
    expect([again.dataset.themeChoice, again.dataset.theme]).toEqual(["light", "light"]);
    expect(resolveTheme("system", true)).toBe("dark");
    expect(resolveTheme("dark", false)).toBe("dark");
  });

  it("draws charts in the chat's theme, whatever the page's", () => {
    matchMedia({ "(prefers-color-scheme: dark)": false });
    document.body.dataset.jpThemeLight = "true";
    const root = document.createElement("div");
    const chart = root.appendChild(document.createElement("div"));
    document.body.append(root);
    root.dataset.theme = "dark";
    expect(isDarkTheme(chart)).toBe(true);
    root.dataset.theme = "light";
    expect(isDarkTheme(chart)).toBe(false);
    delete root.dataset.theme;
    expect(isDarkTheme(chart)).toBe(false); // the page's Jupyter theme, as before
    root.remove();
    delete document.body.dataset.jpThemeLight;
  });

  it("ignores a stored value it does not know", () => {
    localStorage.setItem(THEME_KEY, "purple");
    const root = document.createElement("div");
    expect(new ThemeSwitch(root).choice).toBe("system");
  });
});

describe("agreement toggle and legend", () => {
  it("is off by default on a phone, agreement on a desktop; the choice is remembered", () => {
    expect(defaultHighlight(true)).toBe("off");
    expect(defaultHighlight(false)).toBe("agreement");
    matchMedia({ "(max-width: 600px)": true });
    const phone = document.createElement("div");
    const control = new HighlightControl(phone);
    expect(phone.dataset.highlight).toBe("off");
    expect(control.el.querySelector<HTMLElement>(".cl-legend")!.hidden).toBe(true);
    control.el.querySelector<HTMLButtonElement>('[data-highlight-mode="disagreement"]')!.click();
    expect(phone.dataset.highlight).toBe("disagreement");
    expect(localStorage.getItem(HIGHLIGHT_KEY)).toBe("disagreement");
    const legend = control.el.querySelector<HTMLElement>(".cl-legend")!;
    expect(legend.hidden).toBe(false);
    expect([...legend.querySelectorAll("mark")].map((m) => m.className)).toEqual(["cl-hl cl-hl-unique", "cl-hl cl-hl-refinement"]);
    expect(legend.textContent).toContain("said by this member only");
    const pressed = [...control.el.querySelectorAll("[aria-pressed=true]")].map((b) => b.textContent);
    expect(pressed).toEqual(["Disagreement"]);
    matchMedia({});
    const desktop = document.createElement("div");
    new HighlightControl(desktop);
    expect(desktop.dataset.highlight).toBe("disagreement"); // remembered
    expect(LEGEND.agreement.map(([k]) => k)).toEqual(["shared", "refinement"]);
  });
});

describe("members as tabs", () => {
  it("selects one member at a time, keeps the choice across updates, moves with arrow keys", () => {
    const tabs = new MemberTabs();
    document.body.append(tabs.el);
    const panes = ["a", "b", "c"].map(() => document.createElement("section"));
    const members = (status: string) => ["a#1", "b#1", "c#1"].map((key) => ({ key, label: key, status }));
    tabs.update(members("streaming"), panes);
    const selected = () => panes.map((p) => p.dataset.tabSelected === "true");
    expect(selected()).toEqual([true, false, false]);
    expect(panes.every((p) => p.getAttribute("role") === "tabpanel")).toBe(true);
    tabs.el.querySelectorAll<HTMLButtonElement>("[role=tab]")[2].click();
    expect(selected()).toEqual([false, false, true]);
    tabs.update(members("done"), panes);
    expect(selected()).toEqual([false, false, true]);
    expect(tabs.el.querySelector("[aria-selected=true]")!.textContent).toBe("c#1 ✓");
    tabs.el.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight" }));
    expect(selected()).toEqual([true, false, false]);
    expect(document.activeElement).toBe(tabs.el.querySelector("[data-key='a#1']"));
    tabs.el.remove();
  });
});

// -- WCAG AA contrast of the agreement marks, from the colours in view.css ------------------

const css = readFileSync(path.join(__dirname, "../src/view.css"), "utf8");

function palette(theme: string): Record<string, string> {
  const block = new RegExp(`\\.cl-root\\[data-theme="${theme}"\\] \\{([^}]*)\\}`).exec(css);
  if (!block) throw new Error(`no ${theme} palette in view.css`);
  return Object.fromEntries([...block[1].matchAll(/(--[\w-]+):\s*(#[0-9a-f]{6})/gi)].map((m) => [m[1], m[2]]));
}

function luminance(hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
  const lin = (c: number) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

export function contrast(a: string, b: string): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

describe("agreement colours", () => {
  it("computes contrast as WCAG does", () => {
    expect(contrast("#000000", "#ffffff")).toBeCloseTo(21, 5);
    expect(contrast("#777777", "#ffffff")).toBeCloseTo(4.48, 2);
  });

  for (const theme of ["light", "dark"]) {
    it(`keeps text on every mark at AA contrast (4.5:1) in the ${theme} theme`, () => {
      const p = palette(theme);
      for (const mark of ["--cl-shared", "--cl-unique", "--cl-refine"]) {
        expect(p[mark], mark).toMatch(/^#/);
        expect(contrast(p["--cl-fg"], p[mark]), `${theme} ${mark}`).toBeGreaterThanOrEqual(4.5);
      }
      // and the marks are told apart from the page itself
      for (const mark of ["--cl-shared", "--cl-unique"]) expect(p[mark]).not.toBe(p["--cl-bg"]);
    });
  }

  it("uses no red or orange for what one member alone says (it is not wrong)", () => {
    for (const theme of ["light", "dark"]) {
      const hex = palette(theme)["--cl-unique"];
      const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
      expect(b, `${theme} ${hex}`).toBeGreaterThanOrEqual(r); // blue-violet, not red
      expect(g, `${theme} ${hex}`).toBeLessThanOrEqual(b);
    }
  });
});
