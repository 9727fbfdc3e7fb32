// VegaChart and VegaChartGrid (dashboard charts): Altair/Vega-Lite specs rendered by the
// bundled vega-embed. A grid draws its charts one after another, the first one first: the
// page shows something as soon as one chart is ready instead of when all of them are.

import "./base.css";
import "./chart.css";
import { renderStatic } from "./charts";

interface Model {
  get(name: string): any;
  on(event: string, cb: () => void): void;
}

type Spec = Record<string, any>;

function label(spec: Spec): string {
  return String(spec.title?.text ?? spec.title ?? spec.description ?? "chart");
}

/** The specs a model holds: a grid's list, or a single chart's spec. */
function specsOf(model: Model): Spec[] {
  const many = model.get("specs");
  if (Array.isArray(many)) return many;
  return [model.get("spec") ?? {}];
}

function render({ model, el }: { model: Model; el: HTMLElement }): () => void {
  el.classList.add("cl-host");
  let finalizers: (() => void)[] = [];
  let generation = 0;
  const draw = async () => {
    const mine = ++generation;
    for (const f of finalizers) f();
    finalizers = [];
    const specs = specsOf(model);
    const grid = Array.isArray(model.get("specs"));
    const boxes = specs.map((spec) => {
      const box = document.createElement("div");
      box.className = "cl-static-chart";
      box.setAttribute("role", "img");
      box.setAttribute("aria-label", label(spec));
      return box;
    });
    if (grid) {
      const wrap = document.createElement("div");
      wrap.className = "cl-chart-grid";
      wrap.append(...boxes);
      el.replaceChildren(wrap);
    } else {
      el.replaceChildren(...boxes);
    }
    for (const [i, box] of boxes.entries()) {
      try {
        const result = await renderStatic(box, specs[i]);
        if (mine !== generation) {
          result.finalize();
          return;
        }
        finalizers.push(() => result.finalize());
        box.dataset.embedded = "true";
      } catch (err: any) {
        if (mine !== generation) return;
        box.textContent = `chart unavailable: ${err?.message ?? err}`;
      }
    }
  };
  model.on("change:spec", draw);
  model.on("change:specs", draw);
  void draw();
  return () => {
    generation += 1;
    for (const f of finalizers) f();
  };
}

// Only the default export: anywidget warns that a named `render` export is deprecated.
export default { render };
