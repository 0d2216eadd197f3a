// Live tail: a region's events as they arrive, pausable (a pause ends the stream; a
// resume starts after the last event shown, so nothing is skipped), with the lag.

import { get, query, stream, type EventLine, type Frontier } from "../api";
import { navigate } from "../nav";
import { filled, h, kindLabel, link, message, short, time } from "../ui";

export async function tailPage(main: HTMLElement, _: string[], signal: AbortSignal): Promise<void> {
  const params = new URLSearchParams(location.search);
  const region: Record<string, string> = {};
  for (const k of ["entity", "prefix", "scope", "kind"]) {
    const v = params.get(k);
    if (v) region[k] = v;
  }
  const rows = h("tbody", { id: "tail-rows" });
  const lag = h("span", { id: "tail-lag" }, "0");
  const state = h("span", { id: "tail-state" }, "live");
  let last = (await get<Frontier>("/v1/frontier", signal)).visible;
  let paused = false;
  let running: AbortController | null = null;

  const follow = async () => {
    const mine = new AbortController();
    running = mine;
    signal.addEventListener("abort", () => mine.abort());
    try {
      for await (const m of stream(`/v1/subscribe${query({ ...region, from: last + 1 })}`, mine.signal)) {
        if (m.event === "lagged") {
          state.textContent = "lagged: reconnecting";
          break;
        }
        if (m.event !== "event") continue;
        const e = JSON.parse(m.data) as EventLine;
        last = e.sequence;
        rows.prepend(
          h(
            "tr",
            {},
            [String(e.sequence), link(`/events/${e.id}`, short(e.id)), link(`/streams/${encodeURIComponent(e.entity)}`, e.entity), e.scope, kindLabel(e.kind, e.kind_name), time(e.timestamp_ns, e.timestamp)].map((c) => h("td", {}, c)),
          ),
        );
        while (rows.children.length > 200) rows.lastElementChild?.remove();
      }
    } catch (e) {
      if (!mine.signal.aborted) state.textContent = `stopped: ${e}`;
    }
  };

  const toggle = h(
    "button",
    {
      type: "button",
      id: "tail-toggle",
      onclick: () => {
        paused = !paused;
        toggle.textContent = paused ? "Resume" : "Pause";
        state.textContent = paused ? "paused" : "live";
        if (paused) running?.abort();
        else void follow();
      },
    },
    "Pause",
  );
  const filter = h(
    "form",
    {
      class: "filters",
      onsubmit: (e: Event) => {
        e.preventDefault();
        navigate(`/tail${query(filled(e.target as HTMLFormElement))}`);
      },
    },
    ...["entity", "prefix", "scope", "kind"].map((k) => h("label", {}, k, h("input", { name: k, value: region[k] ?? "" }))),
    h("button", { type: "submit" }, "Follow"),
  );
  main.append(
    h("h1", {}, "Live tail"),
    filter,
    h("p", {}, toggle, " ", state, " · behind the store by ", lag, " sequences"),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["seq", "id", "entity", "scope", "kind", "time"].map((x) => h("th", { scope: "col" }, x)))), rows)),
    Object.keys(region).length ? "" : message("Every event; narrow it with the fields above."),
  );
  const poll = setInterval(async () => {
    try {
      const f = await get<Frontier>("/v1/frontier", signal);
      lag.textContent = String(paused ? f.visible - last : Math.max(0, f.visible - last));
    } catch {
      /* the page is going away */
    }
  }, 1000);
  signal.addEventListener("abort", () => clearInterval(poll));
  await follow();
}
