// "Your data" in the page header: "Download my data" (one JSON file, through the kernel's
// `download` message) and "Delete my data…", which first asks in plain words what will be
// deleted and that it cannot be undone, and is confirmed by typing the user name (the hub
// user in a hub, else the OS user: the model's `user_name`; the kernel checks it again).
// Deleting is refused while a run is in progress: the
// button is disabled then (and the kernel refuses it too). The kernel's answer is a `notice`
// carrying the request's `req`, shown here in the panel instead of among the page's notices.
// "Keep my runs for N days" stores the user's own retention (`set_retention`); the smaller of
// it and the site's maximum (the model's `retention.max`) applies.

import "./mydata.css";
import { h, setText } from "./dom";
import type { DeleteMyData, DownloadMyData, SetRetention } from "./messages.gen";

export const DELETE_WARNING =
  "This deletes every run in your run log (your prompts, the members' answers and the " +
  "syntheses, with their entries in llm's log) and all your saved configs. On a shared site " +
  "the gateway also deletes the answers it cached for you and stops naming you in its usage " +
  "records. This cannot be undone: download your data first if you want a copy.";

type Json = { type?: string; level?: string; message?: string; req?: unknown };
export type Retention = { max?: number | null; chosen?: number | null; error?: string };

export class MyDataMenu {
  readonly el: HTMLDetailsElement;
  private downloadBtn: HTMLButtonElement;
  private deleteBtn: HTMLButtonElement;
  private confirmBox: HTMLElement;
  private confirmBtn: HTMLButtonElement;
  private nameInput: HTMLInputElement;
  private nameShown: HTMLElement;
  private userName = "";
  private busy = false;
  private daysInput: HTMLInputElement;
  private retentionHint: HTMLElement;
  private result: HTMLElement;
  private busyHint: HTMLElement;
  private pending = new Set<string>();
  private seq = 0;

  constructor(private send: (msg: DownloadMyData | DeleteMyData | SetRetention) => void) {
    this.downloadBtn = h("button", { type: "button", class: "cl-btn cl-small", "data-action": "download-my-data", text: "Download my data" });
    this.downloadBtn.onclick = () => this.send({ type: "download_my_data", req: this.req() });
    this.deleteBtn = h("button", { type: "button", class: "cl-btn cl-small cl-danger", "data-action": "delete-my-data", text: "Delete my data…" });
    this.deleteBtn.onclick = () => this.ask();
    this.confirmBtn = h("button", { type: "button", class: "cl-btn cl-small cl-danger", "data-action": "confirm-delete-my-data", text: "Delete everything" });
    this.confirmBtn.onclick = () => {
      if (!this.nameMatches()) return;
      this.confirmBox.hidden = true;
      this.send({ type: "delete_my_data", confirm: this.nameInput.value, req: this.req() });
      this.nameInput.value = "";
    };
    this.nameShown = h("b", { class: "cl-mydata-name" });
    this.nameInput = h("input", {
      type: "text",
      class: "cl-mydata-name-input",
      autocomplete: "off",
      spellcheck: "false",
      "aria-label": "Type your user name to confirm",
    });
    this.nameInput.oninput = () => this.updateConfirm();
    this.nameInput.onkeydown = (ev) => {
      if (ev.key === "Enter") this.confirmBtn.click();
    };
    const keep = h("button", { type: "button", class: "cl-btn cl-small", "data-action": "keep-my-data", text: "Keep my data" });
    keep.onclick = () => {
      this.confirmBox.hidden = true;
      this.deleteBtn.focus();
    };
    this.confirmBox = h(
      "div",
      { class: "cl-mydata-confirm", role: "alertdialog", "aria-label": "Delete all your data?", hidden: true },
      h("p", { class: "cl-mydata-question", text: "Delete all your data?" }),
      h("p", { class: "cl-mydata-warning", text: DELETE_WARNING }),
      h("label", { class: "cl-mydata-type" }, h("span", { text: "Type your user name, " }), this.nameShown, h("span", { text: ", to confirm:" }), this.nameInput),
      h("div", { class: "cl-mydata-buttons" }, this.confirmBtn, keep),
    );
    this.daysInput = h("input", { type: "number", min: "1", step: "1", class: "cl-mydata-days", "aria-label": "Days to keep my runs", placeholder: "no limit" });
    const saveDays = h("button", { type: "button", class: "cl-btn cl-small", "data-action": "set-retention", text: "Save" });
    saveDays.onclick = () => this.saveRetention();
    this.retentionHint = h("small", { class: "cl-hint cl-mydata-retention-hint" });
    const retention = h(
      "div",
      { class: "cl-mydata-retention" },
      h("label", {}, h("span", { text: "Keep my runs for " }), this.daysInput, h("span", { text: " days " })),
      saveDays,
      this.retentionHint,
    );
    this.busyHint = h("small", { class: "cl-hint", text: "Stop the run in progress to delete your data.", hidden: true });
    this.result = h("p", { class: "cl-mydata-result", role: "status", "aria-live": "polite" });
    this.el = h(
      "details",
      { class: "cl-mydata" },
      h("summary", { class: "cl-btn cl-small", text: "Your data" }),
      h(
        "div",
        { class: "cl-mydata-panel cl-panel" },
        h("div", { class: "cl-mydata-buttons" }, this.downloadBtn, this.deleteBtn),
        this.busyHint,
        retention,
        this.confirmBox,
        this.result,
      ),
    );
  }

  /** Whether a run is in progress: deleting waits until it is not. */
  setBusy(running: boolean): void {
    this.busy = running;
    this.deleteBtn.disabled = running;
    this.busyHint.hidden = !running;
    this.updateConfirm();
  }

  /** The retention in force: the site's maximum, the user's choice, or a setting's error. */
  setRetention(state: Retention): void {
    const chosen = state?.chosen;
    this.daysInput.value = typeof chosen === "number" ? String(chosen) : "";
    const max = state?.max;
    if (typeof max === "number") this.daysInput.max = String(max);
    else this.daysInput.removeAttribute("max");
    setText(
      this.retentionHint,
      state?.error
        ? state.error
        : typeof max === "number"
          ? `This site keeps runs at most ${max} days; fewer days of yours win.`
          : "Empty: kept until you delete them.",
    );
  }

  private saveRetention(): void {
    const text = this.daysInput.value.trim();
    // A number input reads "" for text it cannot parse: badInput tells that from empty.
    if (this.daysInput.validity.badInput || (text !== "" && !/^[0-9]+$/.test(text))) {
      this.showResult("Days must be a whole number, at least 1.", "error");
      return;
    }
    const days = text === "" ? null : Number(text);
    if (days === 0) {
      this.showResult("Days must be a whole number, at least 1.", "error");
      return;
    }
    this.send({ type: "set_retention", days, req: this.req() });
  }

  private showResult(message: string, level: string): void {
    setText(this.result, message);
    this.result.dataset.level = level;
  }

  /** Whose data this is: what must be typed to confirm the deletion. */
  setUserName(name: string): void {
    this.userName = name;
    setText(this.nameShown, name);
    this.updateConfirm();
  }

  private nameMatches(): boolean {
    return this.userName !== "" && this.nameInput.value === this.userName;
  }

  private updateConfirm(): void {
    this.confirmBtn.disabled = this.busy || !this.nameMatches();
  }

  /** A notice from the kernel: the answer to a request of this panel is shown here.
   * Returns whether it was (the page then shows no other notice of it). */
  onNotice(msg: Json): boolean {
    const req = typeof msg?.req === "string" ? msg.req : "";
    if (!this.pending.delete(req)) return false;
    this.showResult(String(msg.message ?? ""), String(msg.level ?? "info"));
    this.el.open = true;
    return true;
  }

  private ask(): void {
    setText(this.result, "");
    this.nameInput.value = "";
    this.updateConfirm();
    this.confirmBox.hidden = false;
    this.nameInput.focus();
  }

  private req(): string {
    const req = `mydata-${++this.seq}`;
    this.pending.add(req);
    // A download that worked is answered by the file, not a notice: forget the oldest.
    if (this.pending.size > 20) this.pending.delete(this.pending.values().next().value as string);
    return req;
  }
}
