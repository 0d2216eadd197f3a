// Builds the console into dist/ with fixed file names, so the server embeds them with
// include_str! and CI can compare a rebuild with the committed bundle byte for byte.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist/assets", { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  legalComments: "eof",
  outfile: "dist/assets/console.js",
  logLevel: "warning",
});
await build({
  entryPoints: ["src/style.css"],
  bundle: true,
  minify: true,
  outfile: "dist/assets/console.css",
  logLevel: "warning",
});
copyFileSync("src/index.html", "dist/index.html");
