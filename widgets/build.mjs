// Bundle the widget front end into the Python package's static/ folder (git-ignored).
// Everything is bundled (vega, vega-lite, vega-embed, marked, DOMPurify, highlight.js, KaTeX
// with its fonts): nothing is loaded from a CDN at run time, so the chat works offline.
import * as esbuild from "esbuild";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(here, "../src/consortium_lab/static");
// The same entries for pages Voila serves through the consortium template: loaded by URL
// (consortium_lab/widget/assets.py), so the bundle is split and what a page does not use yet
// (vega, until a chart is drawn) is a chunk fetched when it is. KaTeX's fonts are files
// there, fetched only when a formula shows.
const templateOutdir = path.resolve(here, "../src/consortium_lab/jupyter/voila/templates/consortium/static");
const watch = process.argv.includes("--watch");

// anywidget injects widget.css as text, so KaTeX's fonts cannot be separate files beside it:
// they are inlined as data: URLs, woff2 only (every browser the page supports reads it; the
// woff and ttf copies would add ~900 KB for nothing).
const katexWoff2Only = {
  name: "katex-woff2-only",
  setup(build) {
    build.onLoad({ filter: /katex(\.min)?\.css$/ }, async (args) => {
      const css = await readFile(args.path, "utf8");
      const contents = css.replace(/,\s*url\([^)]*\.(?:woff|ttf)\)\s*format\("(?:woff|truetype)"\)/g, "");
      if (/\.(?:woff|ttf)\)/.test(contents)) throw new Error("katex css: unexpected font list");
      return { contents, loader: "css", resolveDir: path.dirname(args.path) };
    });
  },
};

// KaTeX and highlight.js load when model text first needs them (math.ts and code.ts import()
// typeset.ts and syntax.ts). marked-katex-extension imports KaTeX for a renderer math.ts
// replaces, so that import gets a stand-in: KaTeX stays in its lazily loaded module.
const katexOnlyWhenTypesetting = {
  name: "katex-only-when-typesetting",
  setup(build) {
    build.onResolve({ filter: /^katex$/ }, (args) =>
      /marked-katex-extension/.test(args.importer) ? { path: "katex", namespace: "unused-katex" } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: "unused-katex" }, () => ({
      contents: 'export default { renderToString() { throw new Error("KaTeX renders in typeset.ts"); } };',
      loader: "js",
    }));
  },
};

// In the split bundle KaTeX's CSS is katex-HASH.css of its own, linked by typeset.ts when it
// first runs (widget.css, which every page loads first, stays without it): typeset.ts's
// import of it is dropped there, and __KATEX_CSS__ names the file.
const katexCssLinked = {
  name: "katex-css-linked",
  setup(build) {
    build.onResolve({ filter: /katex\.min\.css$/ }, (args) =>
      /typeset\.ts$/.test(args.importer) ? { path: "katex.css", namespace: "linked-katex-css" } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: "linked-katex-css" }, () => ({ contents: "", loader: "js" }));
  },
};

const options = {
  entryPoints: { widget: path.join(here, "src/index.ts"), chart: path.join(here, "src/chart.ts") },
  bundle: true,
  format: "esm",
  minify: !watch,
  target: ["es2020"],
  outdir,
  legalComments: "none",
  logLevel: "info",
  define: { "process.env.NODE_ENV": '"production"' },
  loader: { ".woff2": "dataurl" },
  plugins: [katexWoff2Only, katexOnlyWhenTypesetting],
};

const servedKatexCss = {
  entryPoints: { katex: path.join(here, "node_modules/katex/dist/katex.min.css") },
  bundle: true,
  minify: !watch,
  outdir: templateOutdir,
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  legalComments: "none",
  logLevel: "info",
  loader: { ".woff2": "file" },
  plugins: [katexWoff2Only],
  metafile: true,
};
const katexCss = await esbuild.build(servedKatexCss);
const katexCssFile = Object.keys(katexCss.metafile.outputs).find((f) => /katex-[^/]*\.css$/.test(f));
if (!katexCssFile) throw new Error("build.mjs: esbuild wrote no katex-HASH.css");

const served = {
  ...options,
  outdir: templateOutdir,
  splitting: true,
  chunkNames: "chunk-[hash]",
  assetNames: "[name]-[hash]",
  loader: { ".woff2": "file" },
  define: { ...options.define, __KATEX_CSS__: JSON.stringify(path.basename(katexCssFile)) },
  plugins: [katexOnlyWhenTypesetting, katexCssLinked],
};

if (watch) {
  for (const o of [options, served]) await (await esbuild.context(o)).watch();
} else {
  await Promise.all([esbuild.build(options), esbuild.build(served)]);
}
