// The HTTP API: JSON requests with the bearer token (kept for the tab's session),
// errors as ApiError with the server's code, and Server-Sent Events read through
// fetch (EventSource cannot send the Authorization header).

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public details: unknown = null,
  ) {
    super(message);
  }
}

const TOKEN_KEY = "batpak.token";

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null): void {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(body: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  const t = token();
  if (t) h["Authorization"] = `Bearer ${t}`;
  if (body) h["Content-Type"] = "application/json";
  return h;
}

async function failure(res: Response): Promise<ApiError> {
  try {
    const body = await res.json();
    const e = body.error ?? {};
    return new ApiError(res.status, e.code ?? "error", e.message ?? res.statusText, e.details ?? null);
  } catch {
    return new ApiError(res.status, "error", res.statusText);
  }
}

export async function get<T>(path: string, signal?: AbortSignal): Promise<T> {
  const res = await fetch(path, { headers: headers(false), signal });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

export async function post<T>(path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const res = await fetch(path, {
    method: "POST",
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

/// A JSON answer as its text: receipts and anchors carry 64-bit integers (Unix
/// nanoseconds) that a JavaScript number cannot hold exactly, so what is sent back for
/// verification must be the text the server gave, never a re-serialised parse.
export async function getText(path: string, signal?: AbortSignal): Promise<string> {
  const res = await fetch(path, { headers: headers(false), signal });
  if (!res.ok) throw await failure(res);
  return await res.text();
}

/// POSTs without a body and returns the answer's text.
export async function postForText(path: string, signal?: AbortSignal): Promise<string> {
  const res = await fetch(path, { method: "POST", headers: headers(false), signal });
  if (!res.ok) throw await failure(res);
  return await res.text();
}

/// POSTs a JSON body given as text, unchanged.
export async function postText<T>(path: string, body: string, signal?: AbortSignal): Promise<T> {
  const res = await fetch(path, { method: "POST", headers: headers(true), body, signal });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

export interface SseEvent {
  event: string;
  id: string | null;
  data: string;
}

/// The events of a live stream until it ends or `signal` aborts it.
export async function* stream(path: string, signal: AbortSignal): AsyncGenerator<SseEvent> {
  const res = await fetch(path, { headers: headers(false), signal });
  if (!res.ok) throw await failure(res);
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let current: SseEvent = { event: "message", id: null, data: "" };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        if (line === "") {
          if (current.data !== "" || current.id !== null) yield current;
          current = { event: "message", id: null, data: "" };
        } else if (!line.startsWith(":")) {
          const at = line.indexOf(":");
          const field = at < 0 ? line : line.slice(0, at);
          const val = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
          if (field === "event") current.event = val;
          else if (field === "id") current.id = val;
          else if (field === "data") current.data += (current.data ? "\n" : "") + val;
        }
      }
    }
  } catch (e) {
    if (signal.aborted) return;
    throw e;
  }
}

// The shapes the console reads (see docs/openapi.json).
export interface EventLine {
  sequence: number;
  id: string;
  timestamp_ns: number;
  timestamp: string;
  entity: string;
  scope: string;
  version: number;
  kind: string;
  kind_name: string | null;
  schema_version: number;
  encoding: string;
  bytes: string | null;
  payload: unknown;
  causation: string | null;
  correlation: string | null;
  metadata: Record<string, string>;
  redacted: boolean;
  salt: string | null;
  digest: string | null;
  prev_hash: string;
  event_hash: string;
}

export interface Page {
  events: EventLine[];
  next?: string;
}

export interface Stats {
  events: number;
  entities: number;
  scopes: number;
  segments: number;
  segment_bytes: number;
  visible_sequence: number;
  durable_sequence: number;
  written_sequence: number;
}

export interface Frontier {
  written: number;
  durable: number;
  visible: number;
}

export interface GraphNode {
  id: string;
  sequence: number;
  entity: string;
  scope: string;
  kind: string;
  kind_name: string | null;
  version: number;
}

export interface GraphEdge {
  from: string;
  to: string;
  kind: "chain" | "causation";
}

export interface Graph {
  root: string;
  nodes: GraphNode[];
  edges: GraphEdge[];
}

export interface Verdict {
  holds: boolean;
  verdict: string;
  [k: string]: unknown;
}

export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}
