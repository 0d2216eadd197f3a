// How long each console page takes to show its content on a large store: serves
// the store with `batpak serve` and loads every page in chromium three times,
// timing from navigation to the page's content (median).
//
//   node bench/pages-at-scale.mjs BATPAK_BIN STORE_DIR
//   (a 1M-event store: cargo run --release -p batpak-bench --bin console_store -- DIR)
import { spawn } from "node:child_process";
import { chromium } from "playwright-core";

const [bin, dir] = process.argv.slice(2);
const child = spawn(bin, ["--dir", dir, "serve", "--addr", "127.0.0.1:0", "--quiet", "--read-only"], { stdio: ["ignore", "pipe", "inherit"] });
const base = await new Promise((ok) => {
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
    const m = out.match(/listening on (http:\/\/[0-9.:]+)/);
    if (m) ok(m[1]);
  });
});
const stats = await (await fetch(`${base}/v1/stats`)).json();
const some = (await (await fetch(`${base}/v1/events?kind=1:2&direction=backward&limit=1`)).json()).events[0];
const pages = [
  ["overview", "/", "#count-events"],
  ["streams", "/streams?prefix=order", "section:has-text('Events') tbody tr"],
  ["stream", `/streams/${some.entity}`, "section:has-text('Versions') tbody tr"],
  ["event", `/events/${some.id}`, "#receipt-verdict"],
  ["graph", `/graph/${some.id}?depth=2`, "#graph-nodes li"],
  ["proof", "/proof", "#verify-run"],
  ["tail", "/tail", "#tail-state"],
];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
console.log(`store: ${stats.events.toLocaleString("en")} events, ${stats.entities.toLocaleString("en")} entities`);
console.log("| page | median ms to content (3 loads) |");
console.log("|---|---|");
for (const [name, path, ready] of pages) {
  const times = [];
  for (let i = 0; i < 3; i++) {
    const t0 = Date.now();
    await page.goto(base + path);
    await page.locator(ready).first().waitFor({ timeout: 60000 });
    times.push(Date.now() - t0);
  }
  times.sort((a, b) => a - b);
  console.log(`| ${name} | ${times[1]} |`);
}
await browser.close();
child.kill("SIGTERM");
