// "Your data" in the page header: "Download my data" (one JSON file, through the kernel's
// `download` message) and "Delete my data…", which first asks in plain words what will be
// deleted and that it cannot be undone, and is confirmed by typing the user name (the hub
// user in a hub, else the OS user: the model's `user_name`; the kernel checks it again).
// Deleting is refused while a run is in progress: the
// button is disabled then (and the kernel refuses it too). The kernel's answer is a `notice`
// carrying the request's `req`, shown here in the panel instead of among the page's notices.

import "./mydata.css";
import { h, setText } from "./dom";
import type { DeleteMyData, DownloadMyData } from "./messages.gen";

export const DELETE_WARNING =
  "This deletes every run in your run log (your prompts, the members' answers and the " +
  "syntheses, with their entries in llm's log) and all your saved configs. On a shared site " +
  "the gateway also deletes the answers it cached for you and stops naming you in its usage " +
  "records. This cannot be undone: download your data first if you want a copy.";

type Json = { type?: string; level?: string; message?: string; req?: unknown };

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
  private result: HTMLElement;
  private busyHint: HTMLElement;
  private pending = new Set<string>();
  private seq = 0;

  constructor(private send: (msg: DownloadMyData | DeleteMyData) => void) {
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
    setText(this.result, String(msg.message ?? ""));
    this.result.dataset.level = String(msg.level ?? "info");
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
