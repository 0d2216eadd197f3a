// Overview: counts, kinds and scopes, the frontier, an append-rate chart of the last
// five minutes and the newest events arriving live.

import { get, stream, query, type EventLine, type Frontier, type Page, type Stats } from "../api";
import { h, kindLabel, link, section, short, table, time } from "../ui";

interface KindInfo {
  kind: string;
  name: string | null;
  events: number;
}
interface ScopeInfo {
  scope: string;
  events: number;
}

const BUCKET_S = 10;
const BUCKETS = 30;

function chart(counts: number[]): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const w = 300;
  const hgt = 80;
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  svg.setAttribute("role", "img");
  const max = Math.max(1, ...counts);
  const per = counts.map((c) => (c / BUCKET_S).toFixed(1));
  svg.setAttribute("aria-label", `appends per second over the last ${(BUCKETS * BUCKET_S) / 60} minutes: ${per.join(", ")}`);
  const bw = w / counts.length;
  counts.forEach((c, i) => {
    const r = document.createElementNS(ns, "rect");
    const bh = (c / max) * (hgt - 4);
    r.setAttribute("x", String(i * bw + 1));
    r.setAttribute("y", String(hgt - bh));
    r.setAttribute("width", String(Math.max(1, bw - 2)));
    r.setAttribute("height", String(bh));
    r.setAttribute("class", "bar");
    const t = document.createElementNS(ns, "title");
    t.textContent = `${per[i]}/s`;
    r.append(t);
    svg.append(r);
  });
  return svg;
}

function eventRow(e: EventLine): HTMLElement[] {
  return [
    h("span", {}, String(e.sequence)),
    link(`/events/${e.id}`, short(e.id)),
    link(`/streams/${encodeURIComponent(e.entity)}`, e.entity),
    h("span", {}, e.scope),
    h("span", {}, kindLabel(e.kind, e.kind_name)),
    h("span", {}, time(e.timestamp_ns, e.timestamp)),
  ];
}

export async function overview(main: HTMLElement, _: string[], signal: AbortSignal): Promise<void> {
  const [stats, kinds, scopes, frontier] = await Promise.all([
    get<Stats>("/v1/stats", signal),
    get<{ kinds: KindInfo[] }>("/v1/kinds", signal),
    get<{ scopes: ScopeInfo[] }>("/v1/scopes", signal),
    get<Frontier>("/v1/frontier", signal),
  ]);
  const since = (Date.now() - BUCKETS * BUCKET_S * 1000) * 1e6;
  const recent = await get<Page>(`/v1/events${query({ direction: "backward", limit: 1000, since: String(since) })}`, signal);

  const counts = new Array<number>(BUCKETS).fill(0);
  const bucketOf = (ns: number) => BUCKETS - 1 - Math.floor((Date.now() - ns / 1e6) / 1000 / BUCKET_S);
  for (const e of recent.events) {
    const b = bucketOf(e.timestamp_ns);
    if (b >= 0 && b < BUCKETS) counts[b]++;
  }
  const chartBox = h("div", { class: "chart" }, chart(counts));
  const counters = {
    events: h("span", { class: "big", id: "count-events" }, stats.events.toLocaleString("en")),
    visible: h("span", { id: "frontier-visible" }, String(frontier.visible)),
    durable: h("span", {}, String(frontier.durable)),
    written: h("span", {}, String(frontier.written)),
  };
  const newest = h("tbody", { id: "newest" });
  for (const e of recent.events.slice(0, 20)) newest.append(h("tr", {}, eventRow(e).map((c) => h("td", {}, c))));

  main.append(
    h("h1", {}, "Overview"),
    h(
      "div",
      { class: "grid" },
      section("Events", counters.events),
      section("Entities", h("span", { class: "big", id: "count-entities" }, stats.entities.toLocaleString("en"))),
      section("Scopes", h("span", { class: "big" }, String(scopes.scopes.length))),
      section("Kinds", h("span", { class: "big" }, String(kinds.kinds.length))),
      section(
        "Frontier",
        h("dl", {}, h("dt", {}, "visible"), h("dd", {}, counters.visible), h("dt", {}, "durable"), h("dd", {}, counters.durable), h("dt", {}, "written"), h("dd", {}, counters.written)),
      ),
    ),
    section("Appends per second, last five minutes", chartBox),
    section(
      "Newest events",
      h(
        "div",
        { class: "table-wrap" },
        h("table", {}, h("thead", {}, h("tr", {}, ["seq", "id", "entity", "scope", "kind", "time"].map((x) => h("th", { scope: "col" }, x)))), newest),
      ),
    ),
    h(
      "div",
      { class: "grid two" },
      section("Kinds", table(["kind", "name", "events"], kinds.kinds.map((k) => [k.kind, k.name ?? "", String(k.events)]))),
      section("Scopes", table(["scope", "events"], scopes.scopes.map((s) => [link(`/streams?scope=${encodeURIComponent(s.scope)}`, s.scope), String(s.events)]))),
    ),
  );

  // Live: new events go on top, counts and the chart move with them.
  let total = stats.events;
  const tick = setInterval(() => {
    counts.shift();
    counts.push(0);
    chartBox.replaceChildren(chart(counts));
  }, BUCKET_S * 1000);
  signal.addEventListener("abort", () => clearInterval(tick));
  for await (const m of stream(`/v1/subscribe`, signal)) {
    if (m.event !== "event") continue;
    const e = JSON.parse(m.data) as EventLine;
    total++;
    counters.events.textContent = total.toLocaleString("en");
    counters.visible.textContent = String(e.sequence);
    counts[BUCKETS - 1]++;
    chartBox.replaceChildren(chart(counts));
    newest.prepend(h("tr", { class: "arrived" }, eventRow(e).map((c) => h("td", {}, c))));
    while (newest.children.length > 20) newest.lastElementChild?.remove();
  }
}
