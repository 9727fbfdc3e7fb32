// Front-end state: the turns held in the widget's traits plus the live streamed text.
//
// Python owns the fold of the event stream (RunResult): finished structure (member answers,
// syntheses, chart rows) arrives in the `turns` / `live_turn` traits. Token deltas arrive as
// coalesced `events` messages and live only here, in a StreamStore, until the member's
// `member_done` (then the full text in the trait replaces the streamed text).

import type { SnapshotStream } from "./messages.gen";
import { voteViews, type VoteView } from "./vote";

export type Json = Record<string, any>;

export interface StreamEvent {
  kind: string;
  run_id?: string;
  model: string;
  instance?: number | null;
  iteration: number;
  stage?: string | null;
  channel?: string;
  text?: string;
  [key: string]: any;
}

export function streamKey(e: {
  kind: string;
  model: string;
  instance?: number | null;
  iteration: number;
  stage?: string | null;
  channel?: string;
}): string {
  const kind = e.kind === "arbiter_delta" || e.kind === "synthesis" ? "arbiter" : "member";
  const instance = kind === "arbiter" ? 0 : (e.instance ?? 1);
  const stage = e.stage ?? (kind === "arbiter" ? "arbiter" : "answer");
  return `${kind}|${e.model}|${instance}|${e.iteration}|${stage}|${e.channel ?? "text"}`;
}

export interface Stream {
  text: string;
  done: boolean;
  /** The full text of member_done, when it came while this view was streaming. */
  finalText?: string;
  /** The call waits for its model (member_queued): a sync-only local model takes one at a time. */
  queued?: boolean;
}

/** Streamed text per (run, stream key). Every delta is appended; nothing is dropped. */
export class StreamStore {
  runs = new Map<string, Map<string, Stream>>();
  messages = 0;
  deltas = 0;
  chars = 0;

  private streams(runId: string): Map<string, Stream> {
    let map = this.runs.get(runId);
    if (!map) {
      map = new Map();
      this.runs.set(runId, map);
    }
    return map;
  }

  get(runId: string, key: string): Stream | undefined {
    return this.runs.get(runId)?.get(key);
  }

  /** Apply one `events` message; returns the run ids and keys that changed. */
  apply(events: StreamEvent[]): Set<string> {
    this.messages += 1;
    const changed = new Set<string>();
    for (const e of events) {
      const runId = e.run_id ?? "";
      if (e.kind === "member_delta" || e.kind === "arbiter_delta") {
        const key = streamKey(e);
        const map = this.streams(runId);
        const stream = map.get(key) ?? { text: "", done: false };
        stream.text += e.text ?? "";
        map.set(key, stream);
        this.deltas += 1;
        this.chars += (e.text ?? "").length;
        changed.add(`${runId}|${key}`);
      } else if (e.kind === "member_done" || e.kind === "member_failed") {
        const key = streamKey({ ...e, kind: "member_delta", channel: "text" });
        const map = this.streams(runId);
        const stream = map.get(key) ?? { text: "", done: false };
        stream.done = true;
        stream.finalText = e.kind === "member_done" ? e.text : e.partial_text;
        map.set(key, stream);
        changed.add(`${runId}|${key}`);
      } else if (e.kind === "member_queued") {
        const key = streamKey({ ...e, kind: "member_delta", channel: "text" });
        const map = this.streams(runId);
        const stream = map.get(key) ?? { text: "", done: false };
        stream.queued = !!e.queued;
        map.set(key, stream);
        changed.add(`${runId}|${key}`);
      } else if (e.kind === "synthesis") {
        const key = streamKey({ ...e, kind: "arbiter_delta", channel: "text" });
        const map = this.streams(runId);
        const stream = map.get(key) ?? { text: "", done: false };
        stream.done = true;
        stream.finalText = e.raw;
        map.set(key, stream);
        changed.add(`${runId}|${key}`);
      }
    }
    return changed;
  }

  /** A `snapshot` message: the streams so far of the live run, replacing what is held. */
  snapshot(runId: string | null, streams: SnapshotStream[]): void {
    if (!runId) return;
    const map = this.streams(runId);
    for (const s of streams) {
      const key = streamKey({ ...s, kind: s.kind });
      const stream = map.get(key) ?? { text: "", done: false };
      stream.text = s.text ?? "";
      map.set(key, stream);
    }
  }

  /** Forget runs that are neither shown nor live (keeps memory bounded). */
  retain(runIds: Set<string>): void {
    for (const id of [...this.runs.keys()]) {
      if (!runIds.has(id)) this.runs.delete(id);
    }
  }
}

// -- view model -------------------------------------------------------------------------------

export type PaneStatus = "queued" | "waiting" | "streaming" | "done" | "failed";

export interface MemberView {
  key: string; // "model#instance"
  model: string;
  instance: number;
  iteration: number;
  stage: string;
  status: PaneStatus;
  /** Streamed raw text (while streaming) or the full text (when done). */
  text: string;
  answer: string;
  thought: string;
  confidence: number | null;
  cached: boolean;
  servedBy: string | null;
  error: string | null;
  errorType: string | null;
  /** How many characters of this member's text this view received as deltas. */
  streamedChars: number;
  /** "exact" when the streamed text equals the final text, "mismatch" if not, "" otherwise. */
  streamCheck: "" | "exact" | "mismatch";
  spans: Json[] | null;
  /** Seconds a call may take in all (the config's limits), shown while it runs. */
  timeLimit?: number | null;
  /** The answer was cut by a limit and kept as far as it went. */
  truncated?: boolean;
}

export interface SynthesisView {
  model: string;
  synthesis: string;
  confidence: number | null;
  analysis: string;
  dissent: string;
  needsIteration: boolean;
  refinementAreas: string[];
  parseOk: boolean;
  warnings: string[];
  raw: string;
  cached: boolean;
  servedBy: string | null;
  spans: Json[] | null;
  /** Vote mode: every distinct answer with its count, the winner first (else empty). */
  votes: VoteView[];
  tieBreak: string | null;
}

export interface IterationView {
  number: number;
  members: MemberView[];
  reviews: MemberView[];
  synthesis: SynthesisView | null;
  arbiterStream: string;
  arbiterModel: string | null;
}

export interface TurnView {
  runId: string;
  prompt: string;
  status: string;
  live: boolean;
  error: string | null;
  mode: string;
  arbiter: string | null;
  threshold: number | null;
  confidence: number | null;
  iterations: IterationView[];
  charts: Record<string, Json[]>;
  chartKey: string;
  startedAt: string;
  /** Why the run ended "completed_with_warnings" (an arbiter output that could not be read). */
  warnings: string[];
}

/** Split a member's streamed raw text into its thought process and the answer so far. */
export function splitStreaming(raw: string): { thought: string; answer: string } {
  let thought = "";
  let rest = raw;
  const open = /<(thinking|think|thought_process|problem_breakdown)[^>]*>/i.exec(rest);
  if (open) {
    const tag = open[1];
    const start = open.index + open[0].length;
    const close = new RegExp(`</${tag}\\s*>`, "i").exec(rest.slice(start));
    if (close) {
      thought = rest.slice(start, start + close.index);
      rest = rest.slice(0, open.index) + rest.slice(start + close.index + close[0].length);
    } else {
      thought = rest.slice(start);
      rest = rest.slice(0, open.index);
    }
  }
  const answer = rest
    .replace(/<confidence[^>]*>[\s\S]*?(<\/confidence\s*>|$)/gi, "")
    .replace(/<\/?(answer|updated_response)[^>]*>/gi, "")
    .replace(/<\/?[a-z_]*$/i, "") // a tag cut in the middle of streaming
    .trim();
  return { thought: thought.trim(), answer };
}

function memberFromResult(m: Json, stream: Stream | undefined): MemberView {
  const done = m.status === "done";
  const streamed = stream?.text ?? "";
  let check: MemberView["streamCheck"] = "";
  if (stream && streamed.length > 0) check = streamed === (m.text ?? "") ? "exact" : "mismatch";
  return {
    key: `${m.model}#${m.instance}`,
    model: m.model,
    instance: m.instance,
    iteration: m.iteration,
    stage: m.stage ?? "answer",
    status: done ? "done" : "failed",
    text: m.text ?? "",
    answer: done ? (m.answer ?? "") : "",
    thought: m.thought_process ?? "",
    confidence: m.confidence ?? null,
    cached: !!m.cached,
    servedBy: m.served_by ?? null,
    error: m.error ?? null,
    errorType: m.error_type ?? null,
    streamedChars: streamed.length,
    streamCheck: check,
    spans: null,
    truncated: !!m.truncated,
  };
}

function memberFromStream(
  model: string,
  instance: number,
  iteration: number,
  stage: string,
  stream: Stream | undefined,
  timeLimit: number | null = null,
): MemberView {
  const text = stream?.text ?? "";
  const parts = splitStreaming(text);
  return {
    key: `${model}#${instance}`,
    model,
    instance,
    iteration,
    stage,
    status: stream && text.length > 0 ? "streaming" : stream?.queued ? "queued" : "waiting",
    timeLimit,
    text,
    answer: parts.answer,
    thought: parts.thought,
    confidence: null,
    cached: false,
    servedBy: null,
    error: null,
    errorType: null,
    streamedChars: text.length,
    streamCheck: "",
    spans: null,
  };
}

/** Build the view of one turn from its trait data and the live streams. */
export function buildTurn(turn: Json, streams: StreamStore, live: boolean): TurnView {
  const ui = turn.ui ?? {};
  const runId: string = ui.run_id ?? turn.metadata?.run_id ?? "";
  const order: Json[] = ui.members ?? [];
  const running = live && (ui.phase === "running" || ui.status === "running");
  const iterations: IterationView[] = [];
  const resultIterations: Json[] = turn.iterations ?? [];
  // Iterations known from the result, plus any that only has streams so far.
  const numbers = new Set<number>(resultIterations.map((it) => it.number));
  const runStreams = streams.runs.get(runId);
  if (runStreams && running) {
    for (const key of runStreams.keys()) numbers.add(Number(key.split("|")[3]));
  }
  for (const number of [...numbers].sort((a, b) => a - b)) {
    const it = resultIterations.find((x) => x.number === number) ?? { members: [] };
    const highlights = ui.highlights?.[String(number)] ?? {};
    const results: Json[] = it.members ?? [];
    const answers: MemberView[] = [];
    for (const o of order) {
      const r = results.find(
        (m) => m.model === o.model && m.instance === o.instance && (m.stage ?? "answer") === "answer",
      );
      const key = streamKey({
        kind: "member_delta",
        model: o.model,
        instance: o.instance,
        iteration: number,
        stage: "answer",
      });
      const stream = streams.get(runId, key);
      const view = r
        ? memberFromResult(r, stream)
        : memberFromStream(o.model, o.instance, number, "answer", running ? stream : undefined, ui.time_limit ?? null);
      if (!r && !running && view.status === "waiting") continue; // never ran (e.g. cancelled)
      if (r && highlights.members) view.spans = highlights.members[view.key] ?? null;
      answers.push(view);
    }
    const reviews: MemberView[] = results
      .filter((m) => (m.stage ?? "answer") !== "answer")
      .map((m) =>
        memberFromResult(
          m,
          streams.get(
            runId,
            streamKey({ kind: "member_delta", model: m.model, instance: m.instance, iteration: number, stage: m.stage }),
          ),
        ),
      );
    let arbiterStream = "";
    let arbiterModel: string | null = null;
    if (runStreams && running && !it.synthesis) {
      for (const [key, s] of runStreams) {
        const [kind, model, , iter] = key.split("|");
        if (kind === "arbiter" && Number(iter) === number) {
          arbiterStream = s.text;
          arbiterModel = model;
        }
      }
    }
    const s = it.synthesis;
    iterations.push({
      number,
      members: answers,
      reviews,
      arbiterStream,
      arbiterModel,
      synthesis: s
        ? {
            model: s.model,
            synthesis: s.synthesis ?? "",
            confidence: s.confidence ?? null,
            analysis: s.analysis ?? "",
            dissent: s.dissent ?? "",
            needsIteration: !!s.needs_iteration,
            refinementAreas: s.refinement_areas ?? [],
            parseOk: s.parse_ok !== false,
            warnings: s.warnings ?? [],
            raw: s.raw ?? "",
            cached: !!s.cached,
            servedBy: s.served_by ?? null,
            spans: highlights.synthesis ?? null,
            votes: voteViews(s.votes),
            tieBreak: s.tie_break ?? null,
          }
        : null,
    });
  }
  const status: string = ui.status ?? turn.metadata?.status ?? "completed";
  return {
    runId,
    prompt: turn.original_prompt ?? "",
    status: live && status === "running" ? "running" : status,
    live,
    error: turn.metadata?.error ?? null,
    mode: turn.metadata?.mode ?? "consortium",
    arbiter: turn.metadata?.arbiter ?? null,
    threshold: ui.threshold ?? null,
    confidence: turn.synthesis?.confidence ?? null,
    iterations,
    charts: ui.charts ?? {},
    chartKey: ui.confidence_chart ?? "",
    startedAt: turn.metadata?.timestamp ?? "",
    warnings: ui.warnings ?? [],
  };
}

/** The whole conversation: finished turns, then the live one (if it is not among them). */
export function buildConversation(turns: Json[], liveTurn: Json, streams: StreamStore): TurnView[] {
  const views = turns.map((t) => buildTurn(t, streams, false));
  const liveId = liveTurn?.ui?.run_id;
  if (liveId && !views.some((v) => v.runId === liveId)) views.push(buildTurn(liveTurn, streams, true));
  return views;
}

// -- config helpers ---------------------------------------------------------------------------

/** "a:2, b" -> {a: 2, b: 1}; a trailing ":N" is a count only when N is an integer and the
 * whole name is not itself a known model id (so "llama3.2:3b" stays one model). */
export function parseModelSpec(spec: string, known: string[] = []): Record<string, number> {
  const out: Record<string, number> = {};
  for (const raw of spec.split(/[,\n]/)) {
    const item = raw.trim();
    if (!item) continue;
    let name = item;
    let count = 1;
    const m = /^(.*):(\d+)$/.exec(item);
    if (m && !known.includes(item) && m[1]) {
      name = m[1];
      count = Math.max(1, parseInt(m[2], 10));
    }
    out[name] = (out[name] ?? 0) + count;
  }
  return out;
}

export function formatModelSpec(models: Record<string, number>): string {
  return Object.entries(models)
    .map(([m, n]) => (n > 1 ? `${m}:${n}` : m))
    .join(", ");
}
