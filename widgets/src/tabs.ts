// Members as tabs on a phone: one member's answer at a time instead of a stack of full panes.
// The tab list is always kept up to date; styles.css shows it (and hides the other panes)
// only at phone width, so the desktop keeps its columns.

import { changed, h, setAttr, setText } from "./dom";

export interface TabMember {
  key: string;
  label: string;
  status: string;
}

const MARK: Record<string, string> = { done: "✓", failed: "✗", streaming: "…", waiting: "…", queued: "…" };

export class MemberTabs {
  readonly el: HTMLElement;
  selected: string | null = null;
  private members: TabMember[] = [];
  private panes: HTMLElement[] = [];

  constructor() {
    this.el = h("div", { class: "cl-member-tabs", role: "tablist", "aria-label": "Members" });
    this.el.addEventListener("keydown", (e) => {
      if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
      const at = this.members.findIndex((m) => m.key === this.selected);
      const next = this.members[(at + (e.key === "ArrowRight" ? 1 : -1) + this.members.length) % this.members.length];
      if (next) this.select(next.key, true);
    });
  }

  /** Show `members` (in order, with their panes): the selected one stays selected. The tabs
   * are made again only when the members change; a status or the selection changes them in
   * place (a tab being clicked or focused is never replaced). */
  update(members: TabMember[], panes: HTMLElement[]): void {
    this.members = members;
    this.panes = panes;
    if (!members.some((m) => m.key === this.selected)) this.selected = members[0]?.key ?? null;
    if (changed(this.el, members.map((m) => m.key).join("|"))) {
      this.el.replaceChildren(
        ...members.map((m) => {
          const tab = h("button", { type: "button", role: "tab", class: "cl-member-tab", "data-key": m.key });
          tab.onclick = () => this.select(m.key, false);
          return tab;
        }),
      );
    }
    const tabs = Array.from(this.el.children) as HTMLElement[];
    members.forEach((m, i) => {
      const on = m.key === this.selected;
      setAttr(tabs[i], "aria-selected", String(on));
      setAttr(tabs[i], "tabindex", on ? "0" : "-1");
      setAttr(tabs[i], "aria-label", `${m.label}, ${m.status}`);
      setText(tabs[i], `${m.label} ${MARK[m.status] ?? ""}`.trim());
    });
    panes.forEach((pane, i) => {
      const on = members[i]?.key === this.selected;
      setAttr(pane, "data-tab-selected", on ? "true" : null);
      setAttr(pane, "role", "tabpanel");
    });
  }

  select(key: string, focus: boolean): void {
    this.selected = key;
    this.update(this.members, this.panes);
    if (focus) [...this.el.querySelectorAll<HTMLElement>("[role=tab]")].find((t) => t.dataset.key === key)?.focus();
  }
}
