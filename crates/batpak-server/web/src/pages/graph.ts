// The causal graph of an event's neighbourhood: chain edges (an entity's hash chain)
// solid, causation edges dashed, laid out top-down by dagre. Clicking a node expands
// its own neighbourhood; its link (or Enter on the list below) opens the event.

import cytoscape from "cytoscape";
import dagre from "cytoscape-dagre";
import { get, type Graph, type GraphNode } from "../api";
import { navigate } from "../nav";
import { h, kindLabel, link, section, short } from "../ui";

cytoscape.use(dagre);

function label(n: GraphNode): string {
  return `${n.entity}\nv${n.version} ${kindLabel(n.kind, n.kind_name)}`;
}

/// Most nodes side by side in one rank; a wider rank (one cause of many effects)
/// wraps into rows, so labels stay readable instead of shrinking to fit.
const RANK_WIDTH = 8;
const NODE_DX = 150;
const NODE_DY = 56;

function wrapWideRanks(cy: cytoscape.Core): void {
  const ranks = new Map<number, cytoscape.NodeSingular[]>();
  cy.nodes().forEach((n) => {
    const y = Math.round(n.position("y"));
    ranks.set(y, [...(ranks.get(y) ?? []), n]);
  });
  let shift = 0;
  for (const y of [...ranks.keys()].sort((a, b) => a - b)) {
    const row = ranks.get(y)!;
    if (row.length <= RANK_WIDTH) {
      row.forEach((n) => n.position("y", y + shift));
      continue;
    }
    const centre = row.reduce((sum, n) => sum + n.position("x"), 0) / row.length;
    // Wrapped, a rank reads in sequence order.
    row.sort((a, b) => a.data("sequence") - b.data("sequence"));
    row.forEach((n, i) => {
      const col = i % RANK_WIDTH;
      const line = Math.floor(i / RANK_WIDTH);
      n.position({ x: centre + (col - (RANK_WIDTH - 1) / 2) * NODE_DX, y: y + shift + line * NODE_DY });
    });
    shift += (Math.ceil(row.length / RANK_WIDTH) - 1) * NODE_DY;
  }
}

/// Grows the box to the graph's height (within bounds) and fits it at a zoom where
/// labels can be read.
function fitReadably(cy: cytoscape.Core, box: HTMLElement): void {
  const bb = cy.elements().boundingBox();
  box.style.height = `${Math.min(4000, Math.max(360, bb.h + 60))}px`;
  cy.resize();
  cy.fit(undefined, 24);
  if (cy.zoom() > 1.2) {
    cy.zoom(1.2);
    cy.center();
  }
}

export async function graphPage(main: HTMLElement, [id]: string[], signal: AbortSignal): Promise<void> {
  const params = new URLSearchParams(location.search);
  const depth = Math.min(16, Math.max(1, Number(params.get("depth") ?? 2) || 2));
  const graph = await get<Graph>(`/v1/events/${encodeURIComponent(id)}/graph?depth=${depth}`, signal);

  const box = h("div", { id: "graph", class: "graph", role: "img", "aria-label": "causal graph" });
  const list = h("ul", { class: "nodes", id: "graph-nodes" });
  const status = h("p", { class: "note", id: "graph-status", role: "status" });
  const select = h(
    "select",
    {
      id: "depth",
      onchange: (e: Event) => navigate(`/graph/${id}?depth=${(e.target as HTMLSelectElement).value}`),
    },
    [1, 2, 3, 4, 6, 8, 12, 16].map((d) => h("option", { value: String(d), selected: d === depth }, String(d))),
  );
  main.append(
    h("h1", {}, "Causal graph of ", link(`/events/${graph.root}`, h("code", {}, short(graph.root)))),
    h("p", {}, h("label", { for: "depth" }, "Depth "), select, " · ", h("span", { class: "legend chain" }, "chain"), " ", h("span", { class: "legend causation" }, "causation")),
    box,
    status,
    section("Nodes", list),
  );

  const nodes = new Map<string, GraphNode>();
  const edges = new Set<string>();
  const cy = cytoscape({
    container: box,
    minZoom: 0.1,
    maxZoom: 3,
    style: [
      {
        selector: "node",
        style: {
          label: "data(label)",
          "text-wrap": "wrap",
          "font-size": 10,
          "text-valign": "center",
          "text-halign": "center",
          shape: "round-rectangle",
          width: 130,
          height: 34,
          "background-color": "#e8eef7",
          "border-width": 1,
          "border-color": "#52667a",
          color: "#1c2733",
        },
      },
      { selector: "node.root", style: { "background-color": "#ffe8a3", "border-width": 2 } },
      {
        selector: "edge",
        style: { width: 2, "curve-style": "bezier", "target-arrow-shape": "triangle" },
      },
      { selector: "edge.chain", style: { "line-color": "#52667a", "target-arrow-color": "#52667a" } },
      {
        selector: "edge.causation",
        style: { "line-color": "#c45500", "target-arrow-color": "#c45500", "line-style": "dashed" },
      },
    ],
  });
  signal.addEventListener("abort", () => cy.destroy());

  const add = (g: Graph) => {
    const fresh: cytoscape.ElementDefinition[] = [];
    for (const n of g.nodes) {
      if (nodes.has(n.id)) continue;
      nodes.set(n.id, n);
      fresh.push({ group: "nodes", data: { id: n.id, label: label(n), sequence: n.sequence }, classes: n.id === graph.root ? "root" : "" });
    }
    for (const e of g.edges) {
      const key = `${e.from}>${e.to}>${e.kind}`;
      if (edges.has(key)) continue;
      edges.add(key);
      fresh.push({ group: "edges", data: { id: key, source: e.from, target: e.to }, classes: e.kind });
    }
    cy.add(fresh);
    const started = performance.now();
    cy.layout({ name: "dagre", rankDir: "TB", nodeSep: 20, rankSep: 40, fit: false } as cytoscape.LayoutOptions).run();
    wrapWideRanks(cy);
    fitReadably(cy, box);
    const took = performance.now() - started;
    box.dataset.nodes = String(cy.nodes().length);
    box.dataset.edges = String(cy.edges().length);
    box.dataset.layoutMs = took.toFixed(1);
    status.textContent = `${cy.nodes().length} events, ${cy.edges().length} links; laid out in ${took.toFixed(0)} ms`;
    list.replaceChildren(
      ...[...nodes.values()]
        .sort((a, b) => a.sequence - b.sequence)
        .map((n) => h("li", {}, link(`/events/${n.id}`, `${n.sequence}: ${n.entity} v${n.version} ${kindLabel(n.kind, n.kind_name)}`))),
    );
  };
  add(graph);

  cy.on("tap", "node", async (evt) => {
    const nodeId = evt.target.id() as string;
    const more = await get<Graph>(`/v1/events/${nodeId}/graph?depth=1`, signal);
    add(more);
  });
  cy.on("dbltap", "node", (evt) => navigate(`/events/${evt.target.id()}`));
}
