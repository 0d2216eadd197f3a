// Which graph library draws a 200-node causal graph fastest in the browser: each
// candidate bundled with esbuild, loaded into Debian's chromium, asked to lay out
// and draw two 200-node graphs (one cause of 199 effects; 10 entity chains of 20
// events with causation between them), timed to the second animation frame after
// the call, median of 7 runs.
//
//   node bench/graph-layouts.mjs
import { build } from "esbuild";
import { chromium } from "playwright-core";

function fanout() {
  const nodes = [{ id: "n0", label: "fanout:root\nv0 1:1" }];
  const edges = [];
  for (let i = 1; i < 200; i++) {
    nodes.push({ id: `n${i}`, label: `fanout:${i}\nv0 1:2` });
    edges.push({ from: "n0", to: `n${i}` });
  }
  return { nodes, edges };
}

function chains() {
  const nodes = [];
  const edges = [];
  for (let c = 0; c < 10; c++) {
    for (let v = 0; v < 20; v++) {
      nodes.push({ id: `c${c}v${v}`, label: `order:${c}\nv${v} 1:2` });
      if (v > 0) edges.push({ from: `c${c}v${v - 1}`, to: `c${c}v${v}` });
      if (c > 0 && v % 4 === 1) edges.push({ from: `c${c - 1}v${v - 1}`, to: `c${c}v${v}` });
    }
  }
  return { nodes, edges };
}

const candidates = {
  "cytoscape + cytoscape-dagre (canvas)": "bench/graph-cytoscape.js",
  "d3-selection + @dagrejs/dagre (SVG)": "bench/graph-d3.js",
};
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const rows = [];
for (const [name, entry] of Object.entries(candidates)) {
  const out = await build({ entryPoints: [entry], bundle: true, minify: true, write: false, format: "iife" });
  const script = out.outputFiles[0].text;
  for (const [shape, graph] of [["fan-out 1 x 199", fanout()], ["10 chains x 20", chains()]]) {
    const times = [];
    for (let run = 0; run < 7; run++) {
      const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
      await page.setContent(`<html><body style="margin:0"><div id="box" style="width:1300px;height:800px"></div></body></html>`);
      await page.addScriptTag({ content: script });
      const ms = await page.evaluate(async (g) => {
        const box = document.getElementById("box");
        const t0 = performance.now();
        window.draw(g, box);
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
        return performance.now() - t0;
      }, graph);
      times.push(ms);
      await page.close();
    }
    times.sort((a, b) => a - b);
    rows.push({ name, shape, median: times[3], bytes: script.length });
  }
}
await browser.close();
console.log("| library | bundle bytes | graph | median ms (7 runs) |");
console.log("|---|---|---|---|");
for (const r of rows) console.log(`| ${r.name} | ${r.bytes.toLocaleString("en")} | ${r.shape} | ${r.median.toFixed(0)} |`);
