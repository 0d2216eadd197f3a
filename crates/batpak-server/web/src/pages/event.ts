// One event: every field, the payload (formatted JSON, or hex when opaque), metadata,
// its neighbours in the entity, cause, effects, correlation group, receipt with its
// verification, and redaction state.

import { ApiError, get, getText, postText, query, type EventLine, type Page, type Verdict } from "../api";
import { h, hexOfBase64, kindLabel, link, message, pretty, section, short, table, time } from "../ui";

function field(name: string, value: Node | string): HTMLElement[] {
  return [h("dt", {}, name), h("dd", {}, value)];
}

export function verdictText(v: Verdict): string {
  switch (v.verdict) {
    case "signed":
      return `holds: signed by key ${v.key_id}`;
    case "unsigned":
      return "holds: unsigned (the store has no signing key)";
    case "holds":
      return v.signed_by ? `holds: signed by key ${v.signed_by}` : "holds";
    case "mismatch":
      return `does not hold: ${v.field} differs (receipt ${v.receipt}, store ${v.stored})`;
    default:
      return `does not hold: ${v.verdict.replace(/_/g, " ")}`;
  }
}

async function neighbour(e: EventLine, step: -1 | 1, signal: AbortSignal): Promise<EventLine | null> {
  const version = e.version + step;
  if (version < 0) return null;
  const page = await get<Page>(
    `/v1/entities/${encodeURIComponent(e.entity)}/events${query({ from_version: version, direction: step < 0 ? "backward" : undefined, limit: 1 })}`,
    signal,
  );
  return page.events[0] ?? null;
}

function eventList(events: EventLine[], none: string): HTMLElement {
  if (!events.length) return message(none);
  return table(
    ["seq", "id", "entity", "version", "kind"],
    events.map((x) => [String(x.sequence), link(`/events/${x.id}`, short(x.id)), x.entity, String(x.version), kindLabel(x.kind, x.kind_name)]),
  );
}

export async function eventPage(main: HTMLElement, [id]: string[], signal: AbortSignal): Promise<void> {
  let e: EventLine;
  try {
    e = await get<EventLine>(`/v1/events/${encodeURIComponent(id)}`, signal);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 400)) {
      main.append(h("h1", {}, "Event"), message(err.message, "error"));
      return;
    }
    throw err;
  }
  const [prev, next, effects, correlated, receipt] = await Promise.all([
    neighbour(e, -1, signal),
    neighbour(e, 1, signal),
    get<{ events: EventLine[] }>(`/v1/events/${e.id}/effects`, signal),
    e.correlation ? get<{ events: EventLine[] }>(`/v1/correlations/${e.correlation}`, signal) : Promise.resolve({ events: [] }),
    getText(`/v1/events/${e.id}/receipt`, signal),
  ]);
  const verdict = await postText<Verdict>("/v1/receipts/verify", receipt, signal);

  let payload: Node;
  if (e.redacted) payload = message(`Redacted: the payload was erased; its digest ${e.digest} keeps the hash verifiable.`);
  else if (e.payload !== null && e.payload !== undefined) payload = h("pre", { class: "payload" }, pretty(e.payload));
  else payload = h("pre", { class: "payload hex" }, hexOfBase64(e.bytes ?? ""));

  main.append(
    h("h1", {}, "Event ", h("code", {}, short(e.id))),
    h(
      "p",
      { class: "links" },
      prev ? link(`/events/${prev.id}`, `◀ version ${prev.version}`) : h("span", { class: "muted" }, "first version"),
      " · ",
      link(`/graph/${e.id}`, "Causal graph"),
      " · ",
      link(`/streams/${encodeURIComponent(e.entity)}`, `Stream ${e.entity}`),
      " · ",
      next ? link(`/events/${next.id}`, `version ${next.version} ▶`) : h("span", { class: "muted" }, "newest version"),
    ),
    section(
      "Fields",
      h(
        "dl",
        { class: "fields" },
        field("id", h("code", {}, e.id)),
        field("sequence", String(e.sequence)),
        field("entity", link(`/streams/${encodeURIComponent(e.entity)}`, e.entity)),
        field("scope", e.scope),
        field("version", String(e.version)),
        field("kind", kindLabel(e.kind, e.kind_name)),
        field("time", time(e.timestamp_ns, e.timestamp)),
        field("encoding", `${e.encoding}, schema ${e.schema_version}`),
        field("cause", e.causation ? link(`/events/${e.causation}`, e.causation) : "none"),
        field("correlation", e.correlation ? h("code", {}, e.correlation) : "none"),
        field("redacted", e.redacted ? "yes" : "no"),
        field("event hash", h("code", {}, e.event_hash)),
        field("previous hash", h("code", {}, e.prev_hash)),
      ),
    ),
    section("Payload", payload),
    section(
      "Metadata",
      Object.keys(e.metadata).length ? table(["key", "value"], Object.entries(e.metadata).map(([k, v]) => [k, v])) : message("None."),
    ),
    section("Receipt", h("p", { class: verdict.holds ? "ok" : "error", id: "receipt-verdict" }, verdictText(verdict)), h("pre", {}, receipt)),
    section("Effects", eventList(effects.events, "It caused no event.")),
    section("Correlation group", e.correlation ? eventList(correlated.events, "No events.") : message("It belongs to no workflow.")),
  );
}
