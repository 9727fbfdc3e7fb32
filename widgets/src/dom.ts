// Tiny DOM helpers: every text goes in through textContent; markup only through sanitize.ts.

let counter = 0;

export function uid(prefix: string): string {
  counter += 1;
  return `${prefix}-${Math.random().toString(36).slice(2, 8)}-${counter}`;
}

type Attrs = Record<string, string | number | boolean | null | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = String(value);
    else if (name === "text") el.textContent = String(value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

/** A labelled control: <div class="cl-field"><label for=id>text</label>control</div>. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLDivElement {
  const id = control.id || uid("cl-field");
  control.id = id;
  const wrap = h("div", { class: "cl-field" }, h("label", { for: id, text: label }), control);
  if (hint) {
    const hintId = `${id}-hint`;
    wrap.append(h("small", { id: hintId, class: "cl-hint", text: hint }));
    const described = control.getAttribute("aria-describedby"); // e.g. its inline error
    control.setAttribute("aria-describedby", described ? `${hintId} ${described}` : hintId);
  }
  return wrap;
}

export function pct(value: number | null | undefined): string {
  return value === null || value === undefined || Number.isNaN(value)
    ? "unknown"
    : `${Math.round(value * 100)}%`;
}

export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

export function setAttr(el: Element, name: string, value: string | null): void {
  if (value === null) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== value) {
    el.setAttribute(name, value);
  }
}

const signatures = new WeakMap<Element, string>();

/** True (and remembers `sig`) when `el` was last rendered from something else. */
export function changed(el: Element, sig: string): boolean {
  if (signatures.get(el) === sig) return false;
  signatures.set(el, sig);
  return true;
}

/** Offer `content` as a file download named `filename`. */
export function download(filename: string, mime: string, content: string): void {
  const blob = new Blob([content], { type: mime });
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** A call of `fn` that waits until nothing asked for it for `delay` ms (each call restarts
 * the wait); `cancel` drops a call still waiting. */
export interface Debounced {
  (): void;
  cancel(): void;
}

export function debounce(fn: () => void, delay: number): Debounced {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const call = (() => {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, delay);
  }) as Debounced;
  call.cancel = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  };
  return call;
}
