// Word clouds per member, folded away in a <details> "Word clouds": nothing is embedded until
// it is opened. The rows (dataset `words`: {member, word, count, x, y, size}) are laid out in
// Python (consortium_lab.analysis.charts.word_rows) and arrive in the turn's ui.charts.words; the spec
// is chart_specs.words (charts.word_cloud(), no member filter), embedded once per member with
// only that member's rows, through the same vega-embed path as the live charts.

import { isDarkTheme, LiveChart } from "./charts";
import { changed, h, setAttr } from "./dom";

export type WordRow = Record<string, any>;

/** Rows per member, members in the order of their first row (config order from Python). */
export function wordsByMember(rows: WordRow[] | null | undefined): Map<string, WordRow[]> {
  const out = new Map<string, WordRow[]>();
  for (const row of rows ?? []) {
    const key = String(row?.member ?? "");
    if (!key) continue;
    let list = out.get(key);
    if (!list) out.set(key, (list = []));
    list.push(row);
  }
  return out;
}

/** Light-to-dark ramps of the word colour: on a dark page the most frequent words get the
 * lightest colour (the spec's own ramp ends in a dark blue, unreadable there). */
export const DARK_WORD_RANGE = ["#7ea6c8", "#dcecfa"];

/** The spec of one member's cloud: titled with the member; recoloured for a dark page. */
export function memberSpec(spec: Record<string, any>, member: string, dark: boolean): Record<string, any> {
  const out: Record<string, any> = { ...spec, title: member };
  const color = spec.encoding?.color;
  if (dark && Array.isArray(color?.scale?.range)) {
    out.encoding = { ...spec.encoding, color: { ...color, scale: { ...color.scale, range: DARK_WORD_RANGE } } };
  }
  return out;
}

/** What a screen reader hears for one cloud: the member and its most frequent words. */
export function wordCloudLabel(member: string, rows: WordRow[], top = 10): string {
  const words = [...rows]
    .sort((a, b) => (b.count ?? 0) - (a.count ?? 0))
    .slice(0, top)
    .map((r) => `${r.word} (${r.count})`);
  return `Word cloud of ${member}${words.length ? `: ${words.join(", ")}` : ""}`;
}

export class WordClouds {
  readonly el: HTMLDetailsElement;
  private body: HTMLElement;
  private charts = new Map<string, LiveChart>();
  private groups = new Map<string, WordRow[]>();
  private rows: WordRow[] | null | undefined = undefined;
  private disposed = false;

  constructor(private specs: () => Record<string, any> | null | undefined) {
    this.body = h("div", { class: "cl-wordclouds-grid" });
    this.el = h(
      "details",
      { class: "cl-box cl-wordclouds", hidden: true },
      h("summary", { text: "Word clouds" }),
      h("small", {
        class: "cl-hint",
        text: "The most frequent words of each member's latest answer, stop words left out; size by frequency.",
      }),
      this.body,
    );
    this.el.addEventListener("toggle", () => this.render());
  }

  /** The turn's word rows (ui.charts.words); embeds only while the fold is open. */
  update(rows: WordRow[] | null | undefined): void {
    if (rows === this.rows && rows !== undefined) return; // same trait data: nothing changed
    this.rows = rows;
    this.groups = wordsByMember(rows);
    this.el.hidden = this.groups.size === 0;
    setAttr(this.el, "data-members", String(this.groups.size));
    this.render();
  }

  private render(): void {
    if (this.disposed || !this.el.open || this.el.hidden) return;
    const spec = this.specs()?.words;
    if (!spec) return;
    for (const [key, chart] of this.charts) {
      if (!this.groups.has(key)) {
        chart.dispose();
        chart.el.remove();
        this.charts.delete(key);
      }
    }
    const fresh: LiveChart[] = [];
    const order: HTMLElement[] = [];
    for (const key of this.groups.keys()) {
      let chart = this.charts.get(key);
      if (!chart) {
        chart = new LiveChart(memberSpec(spec, key, isDarkTheme(this.el)), "words", "replace", `Word cloud of ${key}`);
        chart.el.dataset.member = key;
        this.charts.set(key, chart);
        fresh.push(chart);
      }
      order.push(chart.el);
    }
    if (changed(this.body, [...this.groups.keys()].join("\u0000"))) this.body.replaceChildren(...order);
    for (const chart of fresh) void chart.mount(); // in the document now
    for (const [key, rows] of this.groups) {
      const chart = this.charts.get(key);
      if (!chart) continue;
      chart.setLabel(wordCloudLabel(key, rows));
      void chart.update(rows);
    }
  }

  dispose(): void {
    this.disposed = true;
    for (const chart of this.charts.values()) chart.dispose();
    this.charts.clear();
  }
}
