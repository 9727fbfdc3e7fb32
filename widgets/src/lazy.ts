// A module loaded with import() the first time a render needs it (KaTeX, highlight.js), so
// the page's first load does not fetch or parse what its first screen does not show. In the
// split bundle Voila serves, the module is a chunk of its own; in the one-file anywidget bundle
// esbuild inlines it and import() only defers running it.

/** A module that loads on first request; `current` is synchronous once it has loaded. */
export class LazyModule<T> {
  private loaded: T | null = null;
  private loading: Promise<T> | null = null;

  constructor(
    private readonly what: string,
    private readonly load: () => Promise<T>,
  ) {}

  /** Whether the module has been asked for yet, and whether it is there. */
  get state(): "idle" | "loading" | "loaded" {
    return this.loaded ? "loaded" : this.loading ? "loading" : "idle";
  }

  /** The module if it has loaded, else null (and its loading starts). */
  current(): T | null {
    if (!this.loaded) void this.ready().catch(() => undefined);
    return this.loaded;
  }

  /** Resolves with the module once loaded. A failed load rejects (with an error that names
   * the module) and is tried again on the next request: the text stays shown unformatted. */
  ready(): Promise<T> {
    if (this.loaded) return Promise.resolve(this.loaded);
    this.loading ??= this.load().then(
      (mod) => (this.loaded = mod),
      (err: unknown) => {
        this.loading = null;
        throw new Error(`consortium_lab: could not load ${this.what} (${String(err)}); the text is shown unformatted`);
      },
    );
    return this.loading;
  }
}
