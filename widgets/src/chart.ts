// VegaChart (dashboard charts): one Altair/Vega-Lite spec rendered by the bundled vega-embed.

import "./styles.css";
import { renderStatic } from "./charts";

interface Model {
  get(name: string): any;
  on(event: string, cb: () => void): void;
}

function render({ model, el }: { model: Model; el: HTMLElement }): () => void {
  const box = document.createElement("div");
  box.className = "cl-static-chart";
  box.setAttribute("role", "img");
  el.classList.add("cl-host");
  el.replaceChildren(box);
  let finalize: (() => void) | null = null;
  const draw = () => {
    finalize?.();
    const spec = model.get("spec") ?? {};
    box.setAttribute("aria-label", String(spec.title?.text ?? spec.title ?? spec.description ?? "chart"));
    renderStatic(box, spec)
      .then((result) => {
        finalize = () => result.finalize();
        box.dataset.embedded = "true";
      })
      .catch((err) => {
        box.textContent = `chart unavailable: ${err?.message ?? err}`;
      });
  };
  model.on("change:spec", draw);
  draw();
  return () => finalize?.();
}

export default { render };
