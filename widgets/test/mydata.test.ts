// "Your data" (mydata.ts): download and delete requests, the plain-words confirmation, the
// refusal while a run is in progress, and the kernel's answer shown in the panel. Through the
// page (index.ts) too: the menu is in the header and takes its notices from the page's stream.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import widget from "../src/index";
import { DELETE_WARNING, MyDataMenu } from "../src/mydata";
import type { FrontendMessage } from "../src/messages.gen";
import { chatState, FakeModel } from "./fakeModel";
import { check } from "./schema";

const click = (root: Element, action: string) =>
  (root.querySelector(`[data-action="${action}"]`) as HTMLButtonElement).click();

const typeName = (root: Element, text: string) => {
  const input = root.querySelector(".cl-mydata-name-input") as HTMLInputElement;
  input.value = text;
  input.dispatchEvent(new Event("input"));
};

describe("MyDataMenu", () => {
  function setup() {
    const sent: FrontendMessage[] = [];
    const menu = new MyDataMenu((m) => sent.push(m));
    menu.setUserName("alice");
    document.body.append(menu.el);
    return { sent, menu, el: menu.el };
  }

  afterEach(() => {
    document.body.innerHTML = "";
  });

  it("asks for a download", () => {
    const { sent, el } = setup();
    click(el, "download-my-data");
    expect(sent).toEqual([{ type: "download_my_data", req: "mydata-1" }]);
    for (const msg of sent) expect(check(msg, "FrontendMessage")).toEqual([]);
  });

  it("deletes only after the confirmation, which says what goes and that it cannot be undone", () => {
    const { sent, el } = setup();
    const confirm = el.querySelector(".cl-mydata-confirm") as HTMLElement;
    expect(confirm.hidden).toBe(true);
    click(el, "delete-my-data");
    expect(sent).toEqual([]);
    expect(confirm.hidden).toBe(false);
    expect(confirm.getAttribute("role")).toBe("alertdialog");
    expect(confirm.textContent).toContain(DELETE_WARNING);
    expect(DELETE_WARNING).toMatch(/every run/);
    expect(DELETE_WARNING).toMatch(/saved configs/);
    expect(DELETE_WARNING).toMatch(/cannot be undone/);
    // "Keep my data" closes it, nothing sent.
    click(el, "keep-my-data");
    expect(confirm.hidden).toBe(true);
    expect(sent).toEqual([]);
    click(el, "delete-my-data");
    expect(confirm.textContent).toContain("Type your user name, alice, to confirm");
    const button = el.querySelector('[data-action="confirm-delete-my-data"]') as HTMLButtonElement;
    // Not the name (a prefix, other case): the button stays disabled and nothing is sent.
    for (const wrong of ["", "alic", "Alice", "alice "]) {
      typeName(el, wrong);
      expect(button.disabled).toBe(true);
      click(el, "confirm-delete-my-data");
    }
    expect(sent).toEqual([]);
    typeName(el, "alice");
    expect(button.disabled).toBe(false);
    click(el, "confirm-delete-my-data");
    expect(sent).toEqual([{ type: "delete_my_data", confirm: "alice", req: "mydata-1" }]);
    expect(check(sent[0], "FrontendMessage")).toEqual([]);
    expect(confirm.hidden).toBe(true);
    // Asked again, the box starts empty.
    click(el, "delete-my-data");
    expect((el.querySelector(".cl-mydata-name-input") as HTMLInputElement).value).toBe("");
    expect(button.disabled).toBe(true);
  });

  it("keeps the confirmation disabled while a run is in progress, even with the name typed", () => {
    const { el, menu } = setup();
    click(el, "delete-my-data");
    typeName(el, "alice");
    const button = el.querySelector('[data-action="confirm-delete-my-data"]') as HTMLButtonElement;
    menu.setBusy(true);
    expect(button.disabled).toBe(true);
    menu.setBusy(false);
    expect(button.disabled).toBe(false);
  });

  it("is disabled while a run is in progress", () => {
    const { el, menu } = setup();
    menu.setBusy(true);
    const del = el.querySelector('[data-action="delete-my-data"]') as HTMLButtonElement;
    const hint = el.querySelector(".cl-hint") as HTMLElement;
    expect(del.disabled).toBe(true);
    expect(hint.hidden).toBe(false);
    expect(hint.textContent).toMatch(/Stop the run/);
    menu.setBusy(false);
    expect(del.disabled).toBe(false);
    expect(hint.hidden).toBe(true);
  });

  it("stores fewer retention days, says the site's maximum, and refuses bad days on the page", () => {
    const { sent, el, menu } = setup();
    menu.setRetention({ max: 90, chosen: 30, error: "" });
    const days = el.querySelector(".cl-mydata-days") as HTMLInputElement;
    const hint = el.querySelector(".cl-mydata-retention-hint") as HTMLElement;
    const result = el.querySelector(".cl-mydata-result") as HTMLElement;
    expect(days.value).toBe("30");
    expect(days.max).toBe("90");
    expect(hint.textContent).toBe("This site keeps runs at most 90 days; fewer days of yours win.");
    days.value = "7";
    click(el, "set-retention");
    days.value = "";
    click(el, "set-retention");
    expect(sent).toEqual([
      { type: "set_retention", days: 7, req: "mydata-1" },
      { type: "set_retention", days: null, req: "mydata-2" },
    ]);
    for (const msg of sent) expect(check(msg, "FrontendMessage")).toEqual([]);
    for (const bad of ["0", "1.5", "-3"]) {
      days.value = bad;
      click(el, "set-retention");
      expect(result.textContent).toBe("Days must be a whole number, at least 1.");
      expect(result.dataset.level).toBe("error");
    }
    expect(sent.length).toBe(2);
    menu.setRetention({ max: null, chosen: null, error: "" });
    expect(days.value).toBe("");
    expect(days.hasAttribute("max")).toBe(false);
    expect(hint.textContent).toBe("Empty: kept until you delete them.");
    menu.setRetention({ max: null, chosen: null, error: "CONSORTIUM_LAB_RETENTION_DAYS must be at least 1 day, got 0" });
    expect(hint.textContent).toMatch(/CONSORTIUM_LAB_RETENTION_DAYS/);
  });

  it("shows the answer to its own requests only", () => {
    const { el, menu } = setup();
    click(el, "delete-my-data");
    typeName(el, "alice");
    click(el, "confirm-delete-my-data");
    expect(menu.onNotice({ type: "notice", level: "info", message: "other", req: "settings-1" })).toBe(false);
    expect(menu.onNotice({ type: "notice", level: "error", message: "The gateway refused.", req: "mydata-1" })).toBe(true);
    const result = el.querySelector(".cl-mydata-result") as HTMLElement;
    expect(result.textContent).toBe("The gateway refused.");
    expect(result.dataset.level).toBe("error");
    // Answered once: a second notice with the same req is not this panel's.
    expect(menu.onNotice({ type: "notice", level: "info", message: "again", req: "mydata-1" })).toBe(false);
  });
});

describe("Your data in the page", () => {
  let model: FakeModel;
  let el: HTMLElement;
  let dispose: () => void;

  beforeEach(() => {
    vi.useFakeTimers();
    model = new FakeModel(chatState());
    el = document.createElement("div");
    document.body.append(el);
    dispose = widget.render({ model, el } as any) as () => void;
  });

  afterEach(() => {
    for (const msg of model.sent) expect(check(msg, "FrontendMessage"), JSON.stringify(msg)).toEqual([]);
    dispose();
    el.remove();
    vi.useRealTimers();
  });

  it("sits in the header, follows the run status and shows the kernel's answer", () => {
    const menu = el.querySelector(".cl-header .cl-mydata") as HTMLDetailsElement;
    expect(menu).not.toBeNull();
    const del = menu.querySelector('[data-action="delete-my-data"]') as HTMLButtonElement;
    model.set("status", "running");
    expect(del.disabled).toBe(true);
    model.set("status", "idle");
    expect(del.disabled).toBe(false);
    click(menu, "delete-my-data");
    // The name to type is the model's user_name, and follows it.
    expect(menu.querySelector(".cl-mydata-name")?.textContent).toBe("alice");
    model.set("user_name", "bob");
    expect(menu.querySelector(".cl-mydata-name")?.textContent).toBe("bob");
    typeName(menu, "alice");
    click(menu, "confirm-delete-my-data");
    expect(model.sent.filter((m) => m.type === "delete_my_data")).toEqual([]);
    typeName(menu, "bob");
    click(menu, "confirm-delete-my-data");
    const sent = model.sent.filter((m) => m.type === "delete_my_data");
    expect(sent).toEqual([{ type: "delete_my_data", confirm: "bob", req: "mydata-1" }]);
    model.receive({ type: "notice", level: "info", message: "Deleted 2 runs and 1 saved config.", req: "mydata-1" });
    expect(menu.querySelector(".cl-mydata-result")?.textContent).toBe("Deleted 2 runs and 1 saved config.");
    // Not also among the page's passing notices.
    expect(el.querySelector(".cl-notices")?.textContent).toBe("");
  });

  it("shows the model's retention and follows it", () => {
    const days = el.querySelector(".cl-header .cl-mydata-days") as HTMLInputElement;
    expect(days.max).toBe("90");
    expect(days.value).toBe("");
    model.set("retention", { max: 60, chosen: 14, error: "" });
    expect(days.max).toBe("60");
    expect(days.value).toBe("14");
  });
});
