// Past runs: open, export (JSON, Markdown) or delete each, newest first.

import { h, pct } from "./dom";
import type { Json } from "./state";
import type { Send } from "./app";

export class History {
  readonly el: HTMLDetailsElement;
  private list: HTMLUListElement;

  constructor(private send: Send) {
    this.list = h("ul", { class: "cl-history-list" });
    this.el = h(
      "details",
      { class: "cl-history cl-panel" },
      h("summary", { text: "Past runs" }),
      this.list,
    );
  }

  render(runs: Json[]): void {
    const rows = (runs ?? []).map((r) => {
      const short = (r.prompt ?? "").slice(0, 40);
      const open = h("button", { type: "button", class: "cl-btn cl-small", text: "Open", "aria-label": `Open the conversation of "${short}"` });
      open.onclick = () => this.send({ type: "open_run", id: r.id });
      const json = h("button", { type: "button", class: "cl-btn cl-small", text: "JSON", "aria-label": `Export "${short}" as JSON` });
      json.onclick = () => this.send({ type: "export", id: r.id, format: "json" });
      const md = h("button", { type: "button", class: "cl-btn cl-small", text: "Markdown", "aria-label": `Export "${short}" as Markdown` });
      md.onclick = () => this.send({ type: "export", id: r.id, format: "markdown" });
      const del = h("button", { type: "button", class: "cl-btn cl-small cl-danger", text: "Delete", "aria-label": `Delete "${short}"` });
      let armed = 0;
      del.onclick = () => {
        if (Date.now() - armed < 4000) this.send({ type: "delete_run", id: r.id });
        else {
          armed = Date.now();
          del.textContent = "Confirm delete";
        }
      };
      const when = (r.started_at ?? "").replace("T", " ").slice(0, 16);
      return h(
        "li",
        { class: "cl-history-item", "data-run-id": r.id },
        h("span", { class: "cl-history-prompt", text: r.prompt ?? "" }),
        h("span", {
          class: "cl-history-meta",
          text: `${when} · ${r.status} · ${pct(r.final_confidence)}`,
        }),
        h("span", { class: "cl-row" }, open, json, md, del),
      );
    });
    if (!rows.length) rows.push(h("li", { class: "cl-empty", text: "No runs yet." }));
    this.list.replaceChildren(...rows);
  }
}
