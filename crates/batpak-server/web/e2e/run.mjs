// End-to-end tests of the console in a real browser (Debian's chromium, driven by
// playwright-core) against real `batpak serve` processes on demo stores.
//
//   BATPAK_BIN=target/debug/batpak node e2e/run.mjs [ARTIFACTS_DIR]
//
// Each page must load with no console error and show the store's real content;
// screenshots of every page go to ARTIFACTS_DIR (default target/console-e2e).

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, writeFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const BIN = resolve(process.env.BATPAK_BIN ?? "../../../target/debug/batpak");
const ARTIFACTS = resolve(process.argv[2] ?? "../../../target/console-e2e");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
mkdirSync(ARTIFACTS, { recursive: true });

function batpak(args, options = {}) {
  const r = spawnSync(BIN, args, { encoding: "utf8", ...options });
  if (r.status !== 0) throw new Error(`batpak ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

/// The key the demo stores and their servers sign with.
const KEY_FILE = join(mkdtempSync(join(tmpdir(), "batpak-e2e-key-")), "signing.key");
batpak(["keygen", KEY_FILE]);
const KEY = readFileSync(KEY_FILE, "utf8").trim();

/// A demo store in a fresh directory.
function demoStore() {
  const dir = join(mkdtempSync(join(tmpdir(), "batpak-e2e-")), "store");
  batpak(["--dir", dir, "--signing-key", KEY, "demo"]);
  return dir;
}

/// `batpak serve` on a free port; resolves to { base, stop }.
function serve(dir, extra = []) {
  return new Promise((ok, fail) => {
    const child = spawn(BIN, ["--dir", dir, "--signing-key", KEY, "serve", "--addr", "127.0.0.1:0", "--quiet", ...extra], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[0-9.:]+)/);
      if (m) ok({ base: m[1], stop: () => child.kill("SIGTERM") });
    });
    child.on("exit", (code) => fail(new Error(`batpak serve exited (${code}): ${out}`)));
  });
}

async function api(base, path, body, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + path, {
    method: body === undefined ? "GET" : "POST",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

function check(condition, what) {
  if (!condition) throw new Error(what);
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
const results = [];

/// Runs one test in a fresh page; collects console errors and failed requests,
/// which fail the test.
async function test(name, viewport, body, allow = null) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => {
    if (m.type() === "error" && !(allow && allow.test(m.text()))) errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`page error: ${e}`));
  const started = Date.now();
  try {
    await body(page, errors);
    check(errors.length === 0, `console errors: ${errors.join("; ")}`);
    results.push({ name, ok: true, ms: Date.now() - started });
    console.log(`ok    ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    results.push({ name, ok: false, error: String(e) });
    console.log(`FAIL  ${name}: ${e}`);
    await page.screenshot({ path: join(ARTIFACTS, `failed-${name.replace(/\W+/g, "-")}.png`) }).catch(() => {});
  } finally {
    await context.close();
  }
}

async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false });
}

const DESKTOP = { width: 1366, height: 900 };
const PHONE = { width: 390, height: 844 };

// ---- the demo store, served -------------------------------------------------
const demoDir = demoStore();
const demo = await serve(demoDir);
const stats = await api(demo.base, "/v1/stats");
const payment = (await api(demo.base, "/v1/events?kind=2:1&limit=1")).events[0];
const graph = await api(demo.base, `/v1/events/${payment.id}/graph?depth=2`);
const cause = await api(demo.base, `/v1/events/${payment.causation}`);

await test("overview shows the store's counts, kinds and newest events", DESKTOP, async (page) => {
  await page.goto(demo.base + "/");
  await page.locator("#count-events").waitFor();
  check((await page.locator("#count-events").textContent()) === stats.events.toLocaleString("en"), "event count");
  check((await page.locator("#count-entities").textContent()) === stats.entities.toLocaleString("en"), "entity count");
  await page.getByText("PaymentCaptured").first().waitFor();
  await page.getByRole("cell", { name: "tenant:acme" }).first().waitFor();
  await shot(page, "overview");
});

await test("a live append appears in the overview and in the tail", DESKTOP, async (page) => {
  await page.goto(demo.base + "/");
  await page.locator("#newest tr").first().waitFor();
  await page.waitForTimeout(300);
  await api(demo.base, "/v1/events", { entity: "order:e2e-live", scope: "tenant:acme", kind: "1:1", payload: { live: true } });
  await page.locator("#newest").getByText("order:e2e-live").waitFor({ timeout: 5000 });
  await page.goto(demo.base + "/tail");
  await page.locator("#tail-state").waitFor();
  await page.waitForTimeout(300);
  await api(demo.base, "/v1/events", { entity: "order:e2e-tail", scope: "tenant:acme", kind: "1:1", payload: { tail: true } });
  await page.locator("#tail-rows").getByText("order:e2e-tail").waitFor({ timeout: 5000 });
  await page.locator("#tail-toggle").click();
  check((await page.locator("#tail-state").textContent()) === "paused", "paused");
  await api(demo.base, "/v1/events", { entity: "order:e2e-paused", scope: "tenant:acme", kind: "1:1", payload: {} });
  await page.locator("#tail-toggle").click();
  // Resuming starts after the last event shown: the one appended while paused arrives.
  await page.locator("#tail-rows").getByText("order:e2e-paused").waitFor({ timeout: 5000 });
  await shot(page, "tail");
});

await test("streams search and an entity's page with its versions", DESKTOP, async (page) => {
  await page.goto(demo.base + "/streams?prefix=order");
  await page.getByRole("link", { name: "order:acme-1000" }).first().waitFor();
  await shot(page, "streams");
  await page.getByRole("link", { name: "order:acme-1000" }).first().click();
  await page.waitForURL(/\/streams\/order(:|%3A)acme-1000/);
  await page.getByText("OrderPlaced").first().waitFor();
  const versions = await api(demo.base, "/v1/entities/order:acme-1000/events?limit=50");
  const rows = await page.locator("section", { hasText: "Versions" }).locator("tbody tr").count();
  check(rows === versions.events.length, `entity rows ${rows} vs ${versions.events.length}`);
  await shot(page, "stream");
});

await test("navigation: event, its cause, the graph, back to an event", DESKTOP, async (page) => {
  await page.goto(`${demo.base}/events/${payment.id}`);
  await page.locator("#receipt-verdict").waitFor();
  const verdict = await page.locator("#receipt-verdict").textContent();
  check(verdict.startsWith("holds: signed by key"), `the server signs: ${verdict}`);
  await page.getByText(payment.entity).first().waitFor();
  await shot(page, "event");
  await page.locator("dd a", { hasText: payment.causation }).click();
  await page.waitForURL(`**/events/${payment.causation}`);
  await page.getByText(cause.entity).first().waitFor();
  await page.getByRole("link", { name: "Causal graph" }).click();
  await page.waitForURL(`**/graph/${payment.causation}`);
  await page.locator("#graph-nodes li").first().waitFor();
  await page.locator("#graph-nodes a", { hasText: payment.entity }).click();
  await page.waitForURL(`**/events/${payment.id}`);
  await page.locator("#receipt-verdict").waitFor();
});

await test("the causal graph draws the event's neighbourhood", DESKTOP, async (page) => {
  await page.goto(`${demo.base}/graph/${payment.id}`);
  const box = page.locator("#graph");
  await page.locator("#graph-nodes li").first().waitFor();
  check((await box.getAttribute("data-nodes")) === String(graph.nodes.length), "node count");
  check((await box.getAttribute("data-edges")) === String(graph.edges.length), "edge count");
  for (const n of graph.nodes) {
    await page.locator("#graph-nodes").getByText(`${n.sequence}: ${n.entity} v${n.version}`).waitFor();
  }
  await shot(page, "graph");
});

await test("proof: verify is clean, an anchor is taken and checks, a receipt check shows its verdict", DESKTOP, async (page) => {
  await page.goto(demo.base + "/proof");
  await page.locator("#verify-run").click();
  await page.locator("#verify-results .ok").waitFor({ timeout: 20000 });
  await page.locator("#anchor-take").click();
  await page.locator("#anchor-download").waitFor();
  const anchor = await page.locator("#anchor-out pre").textContent();
  await page.locator("#check-input").fill(anchor);
  await page.locator("#check-run").click();
  await page.locator("#check-verdict .ok").waitFor();
  // As text: the receipt's nanosecond timestamp does not fit a JavaScript number.
  const receipt = await (await fetch(`${demo.base}/v1/events/${payment.id}/receipt`)).text();
  await page.locator("#check-input").fill(receipt);
  await page.locator("#check-run").click();
  await page.locator("#check-verdict", { hasText: "Receipt holds: signed by key" }).waitFor();
  const forged = receipt.replace(/"version":(\d+)/, (_, v) => `"version":${Number(v) + 1}`);
  check(forged !== receipt, "the receipt has a version to change");
  await page.locator("#check-input").fill(forged);
  await page.locator("#check-run").click();
  await page.locator("#check-verdict .error", { hasText: "does not hold" }).waitFor();
  await shot(page, "proof");
});

await test("phone width: no page scrolls sideways, and the header wraps", PHONE, async (page) => {
  for (const path of ["/", "/streams", `/events/${payment.id}`, `/graph/${payment.id}`, "/proof", "/tail"]) {
    await page.goto(demo.base + path);
    await page.locator("main h1").waitFor();
    await page.waitForTimeout(200);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(wide <= 0, `${path} is ${wide}px wider than the screen`);
  }
  await page.goto(demo.base + "/");
  await page.locator("#count-events").waitFor();
  await shot(page, "overview-phone");
});

await test("keyboard: the header and an event's links are reachable by Tab and Enter", DESKTOP, async (page) => {
  await page.goto(demo.base + "/");
  await page.locator("#count-events").waitFor();
  await page.keyboard.press("Tab");
  check((await page.evaluate(() => document.activeElement?.textContent)) === "batpak", "first stop: home");
  await page.keyboard.press("Tab");
  check((await page.evaluate(() => document.activeElement?.textContent)) === "Streams", "second stop: Streams");
  await page.keyboard.press("Enter");
  await page.waitForURL("**/streams");
  await page.locator("input[name=id]").fill(payment.id);
  await page.keyboard.press("Enter");
  await page.waitForURL(`**/events/${payment.id}`);
  await page.locator("#receipt-verdict").waitFor();
});

// A graph of 200 events: one cause with 199 effects.
await test("a 200-node graph lays out and stays readable", DESKTOP, async (page) => {
  const root = await api(demo.base, "/v1/events", { entity: "fanout:root", scope: "e2e", kind: "1:1", payload: {} });
  const events = [];
  for (let i = 0; i < 199; i++) {
    events.push({ entity: `fanout:${i}`, scope: "e2e", kind: "1:2", payload: { i }, causation: root.receipt.event_id });
  }
  await api(demo.base, "/v1/batches", { events });
  await page.goto(`${demo.base}/graph/${root.receipt.event_id}?depth=1`);
  await page.locator("#graph-nodes li").nth(199).waitFor({ timeout: 20000 });
  const box = page.locator("#graph");
  check((await box.getAttribute("data-nodes")) === "200", "200 nodes");
  check((await box.getAttribute("data-edges")) === "199", "199 causation edges");
  const ms = Number(await box.getAttribute("data-layout-ms"));
  console.log(`      200-node dagre layout in the browser: ${ms} ms`);
  writeFileSync(join(ARTIFACTS, "graph-200-layout-ms.txt"), `${ms}\n`);
  await shot(page, "graph-200");
});
demo.stop();

// ---- a tampered store ------------------------------------------------------
await test("a tampered store shows the finding on the proof page", DESKTOP, async (page) => {
  const dir = demoStore();
  const segments = join(dir, "segments");
  const file = readdirSync(segments).filter((f) => f.endsWith(".seg")).sort()[0];
  const path = join(segments, file);
  const bytes = readFileSync(path);
  const at = bytes.indexOf(Buffer.from("customer:acme-0"));
  check(at > 0 && statSync(path).size > at, "the demo's first order names customer:acme-0");
  bytes[at + "customer:acme-".length] = "X".charCodeAt(0);
  writeFileSync(path, bytes);
  const tampered = await serve(dir);
  try {
    await page.goto(tampered.base + "/proof");
    await page.locator("#verify-run").click();
    await page.locator("#verify-results .error").waitFor({ timeout: 20000 });
    await page.locator("#verify-results table").getByText(file).first().waitFor();
    await shot(page, "proof-tampered");
  } finally {
    tampered.stop();
  }
});

// ---- a token-protected server ----------------------------------------------
await test("a token-protected server refuses without a token and serves with one", DESKTOP, async (page) => {
  const dir = demoStore();
  const tokens = join(dir, "..", "tokens.json");
  const added = JSON.parse(batpak(["--json", "token", "add", "--tokens", tokens, "--principal", "e2e", "--grant", "read@*"]));
  const narrow = JSON.parse(batpak(["--json", "token", "add", "--tokens", tokens, "--principal", "acme", "--grant", "read@tenant:acme"]));
  const guarded = await serve(dir, ["--tokens", tokens]);
  try {
    await page.goto(guarded.base + "/");
    await page.getByText("This server needs a token").waitFor();
    const res = await fetch(guarded.base + "/v1/stats");
    check(res.status === 401, "the API refuses without a token");
    await page.locator("#token").fill("bpk_wrong");
    await page.getByRole("button", { name: "Use it" }).click();
    await page.getByText("The token was refused.").waitFor();
    await page.locator("#token").fill(added.token);
    await page.getByRole("button", { name: "Use it" }).click();
    await page.locator("#count-events").waitFor();
    await page.locator("#newest").getByText("tenant:initech").first().waitFor();
    await shot(page, "token");
    // A token of one scope sees only that scope's events.
    await page.getByRole("button", { name: "Forget token" }).click();
    await page.locator("#token").fill(narrow.token);
    await page.getByRole("button", { name: "Use it" }).click();
    await page.goto(guarded.base + "/streams");
    await page.locator("section", { hasText: "Events" }).locator("tbody tr").first().waitFor();
    const text = await page.locator("main").textContent();
    check(text.includes("order:acme-1000"), "the acme token reads acme's orders");
    check(!text.includes("globex") && !text.includes("initech"), "and nothing of another tenant");
  } finally {
    guarded.stop();
  }
  // The browser logs the API's 401 answers, which this test expects.
}, /status of 401/);

await browser.close();
const failed = results.filter((r) => !r.ok);
writeFileSync(join(ARTIFACTS, "results.json"), JSON.stringify(results, null, 2));
console.log(`console e2e: ${results.length - failed.length} passed, ${failed.length} failed; screenshots in ${ARTIFACTS}`);
process.exit(failed.length ? 1 : 0);
