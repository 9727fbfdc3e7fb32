// Agreement highlighting on rendered markdown.
//
// Python gives spans as offsets into the member's raw answer text (kind shared | unique,
// `shared_with`). The answer is shown rendered as markdown, so offsets do not map directly onto
// the DOM: instead the words of the raw text and the words of the rendered text are aligned in
// order (markdown keeps the words and drops the syntax), and each run of aligned words of one
// span is wrapped in a <mark> inside its text node.

export interface Span {
  start: number;
  end: number;
  kind: string;
  shared_with?: string[];
  area?: number | null;
}

const WORD = /[\p{L}\p{N}_\p{M}]+(?:['’][\p{L}\p{N}_\p{M}]+)*/gu;

interface Word {
  text: string;
  start: number;
  end: number;
}

function words(text: string): Word[] {
  const out: Word[] = [];
  for (const m of text.matchAll(WORD)) out.push({ text: m[0], start: m.index!, end: m.index! + m[0].length });
  return out;
}

interface DomWord extends Word {
  node: Text;
}

function domWords(root: Node): DomWord[] {
  const out: DomWord[] = [];
  const doc = root.ownerDocument ?? (root as Document);
  const walker = doc.createTreeWalker(root, 4 /* NodeFilter.SHOW_TEXT */);
  let node = walker.nextNode() as Text | null;
  while (node) {
    for (const w of words(node.data)) out.push({ ...w, node });
    node = walker.nextNode() as Text | null;
  }
  return out;
}

const LOOKAHEAD = 8;

/** Wrap the words of `spans` (offsets into `raw`) found in `root`'s rendered text in
 * <mark class="cl-hl cl-hl-KIND">. Returns how many words were marked. */
export function highlightSpans(root: HTMLElement, raw: string, spans: Span[]): number {
  if (!spans?.length) return 0;
  const rawWords = words(raw);
  const spanOf = (w: Word): number => spans.findIndex((s) => w.start >= s.start && w.end <= s.end);
  const dom = domWords(root);
  // Align in order: equal words match; a raw word not shown (a link target, markup) is skipped.
  const marks: { word: DomWord; span: number }[] = [];
  let j = 0;
  for (const w of rawWords) {
    if (j >= dom.length) break;
    let k = -1;
    for (let d = 0; d < LOOKAHEAD && j + d < dom.length; d++) {
      if (dom[j + d].text === w.text) {
        k = j + d;
        break;
      }
    }
    if (k < 0) continue;
    const span = spanOf(w);
    if (span >= 0) marks.push({ word: dom[k], span });
    j = k + 1;
  }
  // Group consecutive marked words of the same span inside the same text node.
  const groups: { node: Text; start: number; end: number; span: number }[] = [];
  for (const m of marks) {
    const last = groups[groups.length - 1];
    if (last && last.node === m.word.node && last.span === m.span) last.end = m.word.end;
    else groups.push({ node: m.word.node, start: m.word.start, end: m.word.end, span: m.span });
  }
  // Wrap from the end of each node backwards so earlier offsets stay valid.
  for (let g = groups.length - 1; g >= 0; g--) {
    const { node, start, end, span } = groups[g];
    const s = spans[span];
    const doc = node.ownerDocument;
    const after = node.splitText(end);
    const middle = node.splitText(start);
    void after;
    const mark = doc.createElement("mark");
    mark.className = `cl-hl cl-hl-${s.kind}`;
    if (s.kind === "shared" && s.shared_with?.length) mark.title = `shared with ${s.shared_with.join(", ")}`;
    else if (s.kind === "unique") mark.title = "only this member says this";
    else if (s.kind === "refinement") mark.title = "touches a refinement area";
    middle.replaceWith(mark);
    mark.appendChild(middle);
  }
  return marks.length;
}
