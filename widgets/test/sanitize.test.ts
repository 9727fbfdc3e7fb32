import { beforeAll, describe, expect, it } from "vitest";
import { syntax } from "../src/code";
import { katex } from "../src/math";
import { isHttpUrl, renderMarkdown, renderMarkdownInto } from "../src/sanitize";
import { check, payloads } from "./xss";

// Code highlighted and math typeset, as once they have loaded (lazy.test.ts: before).
beforeAll(async () => {
  await Promise.all([syntax.ready(), katex.ready()]);
});

describe("markdown sanitisation with the XSS corpus", () => {
  it("has at least 50 payloads", () => {
    expect(payloads.length).toBeGreaterThanOrEqual(50);
  });

  it.each(payloads.map((p, i) => [i + 1, p] as [number, string]))("payload %i is neutralised (string)", (_i, payload) => {
    const html = renderMarkdown(payload as string);
    const box = document.createElement("div");
    box.innerHTML = html;
    check(box);
    // no remote image can load: an <img> keeps no URL at all
    for (const img of Array.from(box.querySelectorAll("img"))) {
      expect(img.getAttributeNames().filter((n) => n !== "alt" && n !== "title" && n !== "role" && n !== "data-neutralised")).toEqual([]);
    }
  });

  it.each(payloads.map((p, i) => [i + 1, p] as [number, string]))("payload %i is neutralised (DOM)", (_i, payload) => {
    const box = document.createElement("div");
    renderMarkdownInto(box, payload as string);
    check(box);
    expect(box.querySelector("img")).toBeNull(); // images become their alt text
  });

  it("keeps ordinary markdown and plain links", () => {
    const html = renderMarkdown("# Title\n\n**bold** and [a link](https://example.org/x) `code`\n\n- one\n- two");
    const box = document.createElement("div");
    box.innerHTML = html;
    expect(box.querySelector("h1")?.textContent).toBe("Title");
    expect(box.querySelector("strong")?.textContent).toBe("bold");
    const a = box.querySelector("a")!;
    expect(a.getAttribute("href")).toBe("https://example.org/x");
    expect(a.getAttribute("rel")).toBe("noopener noreferrer nofollow");
    expect(a.getAttribute("referrerpolicy")).toBe("no-referrer");
    expect(box.querySelectorAll("li").length).toBe(2);
  });

  it("shows an image as its alt text", () => {
    const box = document.createElement("div");
    renderMarkdownInto(box, "see ![the chart](https://evil.example/c.png)");
    expect(box.textContent).toContain("[image: the chart]");
    expect(box.innerHTML).not.toContain("evil.example");
  });

  it("drops relative, protocol-relative and odd links", () => {
    for (const href of ["/x", "x.html", "//evil.example/x", "/\\evil.example", "mailto:a@b.c", "ftp://x/y", "#frag"]) {
      const box = document.createElement("div");
      box.innerHTML = renderMarkdown(`<a href="${href}">t</a>`);
      expect(box.querySelector("a")?.hasAttribute("href"), href).toBe(false);
    }
  });
});
