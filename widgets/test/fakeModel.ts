// A stand-in for anywidget's model: the synced traits, change events, custom messages both
// ways (`sent` holds what the page sends to the kernel).
import type { AnyModel } from "@anywidget/types";
import type { ChatModel, FrontendMessage, KernelMessage } from "../src/messages.gen";

type Handler = (...args: any[]) => void;

export class FakeModel implements AnyModel<ChatModel> {
  sent: FrontendMessage[] = [];
  private handlers = new Map<string, Set<Handler>>();
  widget_manager = { get_model: async () => this as any };

  constructor(private state: ChatModel) {}

  get<K extends keyof ChatModel>(key: K): ChatModel[K] {
    return this.state[key];
  }

  set<K extends keyof ChatModel>(key: K, value: ChatModel[K]): void {
    this.state[key] = value;
    this.emit(`change:${String(key)}`);
  }

  on(event: string, cb: Handler): void {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event)!.add(cb);
  }

  off(event?: string | null, cb?: Handler | null): void {
    if (!event) this.handlers.clear();
    else if (!cb) this.handlers.delete(event);
    else this.handlers.get(event)?.delete(cb);
  }

  save_changes(): void {}

  send(content: any): void {
    this.sent.push(content);
  }

  /** A custom message from the kernel. */
  receive(msg: KernelMessage): void {
    this.emit("msg:custom", msg, []);
  }

  emit(event: string, ...args: any[]): void {
    for (const cb of this.handlers.get(event) ?? []) cb(...args);
  }
}

export function chatState(overrides: Partial<ChatModel> = {}): ChatModel {
  return {
    chart_specs: {},
    config: { models: { "demo-analyst": 1, "demo-skeptic": 2 }, arbiter: "demo-arbiter", mode: "consortium" },
    conversation_id: "c1",
    error: "",
    live_turn: {},
    models: [
      { id: "demo-analyst", label: "demo-analyst (offline demo)", demo: true, aliases: [] },
      { id: "demo-skeptic", label: "demo-skeptic (offline demo)", demo: true, aliases: ["sk"] },
      { id: "demo-arbiter", label: "demo-arbiter (offline demo)", demo: true, aliases: [] },
    ],
    past_runs: [],
    saved_configs: [],
    status: "idle",
    turns: [],
    user_name: "alice",
    retention: { max: 90, chosen: null, error: "" },
    ...overrides,
  };
}
