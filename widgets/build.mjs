// Bundle the widget front end into the Python package's static/ folder (git-ignored).
// Everything is bundled (vega, vega-lite, vega-embed, marked, DOMPurify): nothing is loaded
// from a CDN at run time, so the chat works offline.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(here, "../src/consortium_lab/static");
const watch = process.argv.includes("--watch");

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
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
