// Live charts: a Vega-Lite spec built in Python (consortium_lab.analysis.charts) is embedded once per
// chart; rows are then appended with view.change(name, changeset().insert(rows)), never by
// re-embedding. vega, vega-lite and vega-embed are bundled: nothing is fetched from outside.
// They are imported when the first chart is drawn, not with the page: most page opens draw
// none, and vega is most of the bundle (in Voila, a chunk of its own, fetched then).

import type { Result } from "vega-embed";

type Vega = { embed: typeof import("vega-embed").default; changeset: typeof import("vega").changeset };
let vega: Promise<Vega> | null = null;
let loaded: Vega | null = null;

/** vega-embed and vega's changeset, loaded on first use. */
export function loadVega(): Promise<Vega> {
  vega ??= Promise.all([import("vega-embed"), import("vega")]).then(([e, v]) => {
    loaded = { embed: e.default, changeset: v.changeset };
    return loaded;
  });
  return vega;
}

export function isDarkTheme(el: Element): boolean {
  // the chat's theme switch (theme.ts) first, then the page's Jupyter theme, then the browser
  const chosen = el.closest("[data-theme]")?.getAttribute("data-theme");
  if (chosen === "dark" || chosen === "light") return chosen === "dark";
  const body = el.ownerDocument?.body;
  const flag = body?.dataset?.jpThemeLight;
  if (flag === "false") return true;
  if (flag === "true") return false;
  const view = el.ownerDocument?.defaultView;
  return !!view?.matchMedia?.("(prefers-color-scheme: dark)").matches;
}

export class LiveChart {
  readonly el: HTMLElement;
  private result: Result | null = null;
  private ready: Promise<void>;
  private shown = new Set<string>();
  private pending: Record<string, any>[] | null = null;
  private disposed = false;
  private mounted = false;

  constructor(
    readonly spec: Record<string, any>,
    readonly dataset: string,
    /** "append": rows only grow; "replace": the dataset holds the latest rows only. */
    readonly mode: "append" | "replace",
    private label: string,
  ) {
    this.el = document.createElement("div");
    this.el.className = "cl-chart";
    this.el.dataset.chart = dataset;
    this.el.dataset.points = "0";
    this.el.setAttribute("role", "img");
    this.el.setAttribute("aria-label", label);
    this.ready = Promise.resolve();
  }

  /** The accessible name (kept when vega-embed renders). */
  setLabel(label: string): void {
    this.label = label;
    if (this.el.getAttribute("aria-label") !== label) this.el.setAttribute("aria-label", label);
  }

  /** Embed the spec (once: later calls return the first one's promise). Must be called
   * after `el` is in the document. */
  mount(): Promise<void> {
    if (this.mounted) return this.ready;
    this.mounted = true;
    this.ready = loadVega()
      .then(({ embed }) => embed(this.el, this.spec as any, {
      actions: false,
      renderer: "svg",
      theme: isDarkTheme(this.el) ? "dark" : undefined,
      config: { background: "transparent", legend: { orient: "bottom", labelLimit: 0 } },
    } as any))
      .then((result) => {
        if (this.disposed) {
          result.finalize();
          return;
        }
        this.result = result;
        this.el.dataset.embedded = "true";
        // vega's view labels its container "Vega visualization": keep ours
        this.el.setAttribute("aria-label", this.label);
        const rows = this.pending;
        this.pending = null;
        if (rows) return this.update(rows);
      })
      .catch((err) => {
        this.el.dataset.error = String(err?.message ?? err);
        this.el.textContent = "chart unavailable";
      });
    return this.ready;
  }

  /** Show `rows` (the dataset's full rows so far): inserts only rows not shown yet, so a
   * point added per iteration is one changeset insert. Rows that went away (a replace-mode
   * dataset, a deleted run) are removed. */
  async update(rows: Record<string, any>[]): Promise<void> {
    if (!this.result) {
      this.pending = rows;
      return;
    }
    const view = this.result.view;
    const { changeset } = loaded!; // embedded, so loaded
    const keys = rows.map((r) => JSON.stringify(r));
    const wanted = new Set(keys);
    const gone = [...this.shown].some((k) => !wanted.has(k));
    if (this.mode === "replace" || gone) {
      if (keys.length === this.shown.size && !gone) return;
      view.change(this.dataset, changeset().remove(() => true).insert(rows.map((r) => ({ ...r }))));
      this.shown = wanted;
    } else {
      const fresh = rows.filter((_, i) => !this.shown.has(keys[i]));
      if (!fresh.length) return;
      view.change(this.dataset, changeset().insert(fresh.map((r) => ({ ...r }))));
      for (const k of keys) this.shown.add(k);
    }
    await view.runAsync();
    this.el.dataset.points = String(view.data(this.dataset).length);
  }

  dispose(): void {
    this.disposed = true;
    this.result?.finalize();
    this.result = null;
  }
}

/** Render a complete Vega-Lite spec once (used by the dashboard's VegaChart widget). */
export async function renderStatic(el: HTMLElement, spec: Record<string, any>): Promise<Result> {
  const { embed } = await loadVega();
  return embed(el, spec as any, {
    actions: false,
    renderer: "svg",
    theme: isDarkTheme(el) ? "dark" : undefined,
    config: { background: "transparent" },
  } as any);
}
