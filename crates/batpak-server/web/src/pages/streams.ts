// Streams: search events by entity prefix, scope, kind and time range, paging both
// ways; an entity's page with its versions, their metadata and the state of each
// projection the application registered.

import { ApiError, get, query, type EventLine, type Page } from "../api";
import { navigate } from "../nav";
import { filled, h, kindLabel, link, message, pretty, section, short, table, time } from "../ui";

interface EntityInfo {
  entity: string;
  scopes: string[];
  version: number;
  events: number;
  first_sequence: number;
  last_sequence: number;
}

function eventsTable(events: EventLine[]): HTMLElement {
  return table(
    ["seq", "version", "id", "entity", "kind", "time", "metadata"],
    events.map((e) => [
      String(e.sequence),
      String(e.version),
      link(`/events/${e.id}`, short(e.id)),
      link(`/streams/${encodeURIComponent(e.entity)}`, e.entity),
      kindLabel(e.kind, e.kind_name),
      time(e.timestamp_ns, e.timestamp),
      Object.entries(e.metadata)
        .map(([k, v]) => `${k}=${v}`)
        .join(" "),
    ]),
  );
}

/// Pages through `path` (a query ending in `?...`), forwards and back: the tokens of
/// the pages seen are kept, so "previous" goes back exactly.
function pager(path: (page?: string) => string, into: HTMLElement, signal: AbortSignal): Promise<void> {
  const tokens: (string | undefined)[] = [undefined];
  let at = 0;
  const show = async () => {
    const page = await get<Page>(path(tokens[at]), signal);
    tokens[at + 1] = page.next;
    const prev = h("button", { type: "button", onclick: () => { at--; void show(); } }, "◀ Previous") as HTMLButtonElement;
    const next = h("button", { type: "button", onclick: () => { at++; void show(); } }, "Next ▶") as HTMLButtonElement;
    prev.disabled = at === 0;
    next.disabled = !page.next;
    into.replaceChildren(
      page.events.length ? eventsTable(page.events) : message("No events."),
      h("div", { class: "pager" }, prev, h("span", {}, `page ${at + 1}`), next),
    );
  };
  return show();
}

export async function streams(main: HTMLElement, _: string[], signal: AbortSignal): Promise<void> {
  const params = new URLSearchParams(location.search);
  const field = (name: string, label: string, placeholder = "") =>
    h(
      "label",
      {},
      label,
      h("input", { name, value: params.get(name) ?? "", placeholder }),
    );
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: (e: Event) => {
        e.preventDefault();
        navigate(`/streams${query(filled(e.target as HTMLFormElement))}`);
      },
    },
    field("prefix", "Entity prefix", "order"),
    field("scope", "Scope"),
    field("kind", "Kind", "1:2 or a name"),
    field("since", "Since", "2026-12-01T00:00:00Z"),
    field("until", "Until"),
    h("label", {}, "Direction", h("select", { name: "direction" }, h("option", { value: "forward" }, "oldest first"), h("option", { value: "backward", selected: params.get("direction") === "backward" }, "newest first"))),
    h("button", { type: "submit" }, "Search"),
  );
  const entities = h("div", {});
  const events = h("div", {});
  main.append(h("h1", {}, "Streams"), section("Search", form), section("Entities", entities), section("Events", events));
  const filters: Record<string, string> = {};
  for (const k of ["prefix", "scope", "kind", "since", "until", "direction"]) {
    const v = params.get(k);
    if (v) filters[k] = v;
  }
  const listed = await get<{ entities: EntityInfo[]; next_after: string | null }>(
    `/v1/entities${query({ prefix: filters.prefix, limit: 50 })}`,
    signal,
  );
  entities.replaceChildren(
    table(
      ["entity", "scopes", "version", "events", "first seq", "last seq"],
      listed.entities.map((e) => [link(`/streams/${encodeURIComponent(e.entity)}`, e.entity), e.scopes.join(", "), String(e.version), String(e.events), String(e.first_sequence), String(e.last_sequence)]),
    ),
    listed.next_after ? message(`More entities after ${listed.next_after}: narrow the prefix.`) : "",
  );
  await pager((page) => `/v1/events${query({ ...filters, limit: 50, page })}`, events, signal);
}

export async function entityPage(main: HTMLElement, [entity]: string[], signal: AbortSignal): Promise<void> {
  const params = new URLSearchParams(location.search);
  const backward = params.get("direction") === "backward";
  const versions = h("div", {});
  const projections = h("div", {});
  main.append(
    h("h1", {}, "Stream ", h("code", {}, entity)),
    h(
      "p",
      {},
      link(`/streams/${encodeURIComponent(entity)}${backward ? "" : "?direction=backward"}`, backward ? "Oldest first" : "Newest first"),
      " · ",
      link(`/streams?prefix=${encodeURIComponent(entity)}`, "Entities under it"),
    ),
    section("Versions", versions),
    section("Projections", projections),
  );
  await pager(
    (page) => `/v1/entities/${encodeURIComponent(entity)}/events${query({ direction: backward ? "backward" : undefined, limit: 50, page })}`,
    versions,
    signal,
  );
  const registered = await get<{ projections: string[] }>("/v1/projections", signal);
  if (!registered.projections.length) {
    projections.replaceChildren(message("The application registered no projections."));
    return;
  }
  const parts: HTMLElement[] = [];
  for (const name of registered.projections) {
    try {
      const p = await get<{ state: unknown }>(`/v1/projections/${encodeURIComponent(name)}/${encodeURIComponent(entity)}`, signal);
      parts.push(h("h3", {}, name), h("pre", {}, pretty(p.state)));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      parts.push(h("h3", {}, name), message(e.message));
    }
  }
  projections.replaceChildren(...parts);
}
