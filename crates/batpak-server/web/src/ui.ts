// Small DOM helpers: elements from a tag, attributes and children; formatting.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | ((e: Event) => void) | undefined>;

export function h(tag: string, attrs: Attrs = {}, ...children: (Child | Child[])[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/// A link the router handles (no page load).
export function link(href: string, ...children: (Child | Child[])[]): HTMLElement {
  return h("a", { href, "data-route": "" }, ...children);
}

export function short(id: string): string {
  return id.length > 13 ? id.slice(0, 8) + "…" + id.slice(-4) : id;
}

export function time(ns: number | string | undefined, rfc?: string): string {
  if (rfc) return rfc.replace("T", " ").replace(/\.\d+Z$/, "Z");
  if (ns === undefined) return "";
  return new Date(Number(ns) / 1e6).toISOString();
}

export function kindLabel(kind: string, name?: string | null): string {
  return name ? `${kind} ${name}` : kind;
}

export function hexOfBase64(b64: string): string {
  const bin = atob(b64);
  let out = "";
  for (let i = 0; i < bin.length; i++) out += bin.charCodeAt(i).toString(16).padStart(2, "0");
  return out;
}

export function pretty(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

export function table(headers: string[], rows: (Child | Child[])[][], caption?: string): HTMLElement {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))),
    ),
  );
}

export function section(title: string, ...children: (Child | Child[])[]): HTMLElement {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export function message(text: string, kind: "error" | "note" = "note"): HTMLElement {
  return h("p", { class: kind, role: kind === "error" ? "alert" : "status" }, text);
}

/// A form's non-empty fields, trimmed: what a search puts in the URL.
export function filled(form: HTMLFormElement): Record<string, string> {
  const q: Record<string, string> = {};
  for (const [k, v] of new FormData(form).entries()) {
    const text = String(v).trim();
    if (text) q[k] = text;
  }
  return q;
}
