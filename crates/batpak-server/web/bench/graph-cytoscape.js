// Candidate A: cytoscape laid out by cytoscape-dagre, drawn on canvas.
import cytoscape from "cytoscape";
import dagre from "cytoscape-dagre";
cytoscape.use(dagre);

window.draw = (graph, box) => {
  const cy = cytoscape({
    container: box,
    elements: [
      ...graph.nodes.map((n) => ({ data: { id: n.id, label: n.label } })),
      ...graph.edges.map((e, i) => ({ data: { id: `e${i}`, source: e.from, target: e.to } })),
    ],
    style: [
      { selector: "node", style: { label: "data(label)", shape: "round-rectangle", width: 130, height: 34, "font-size": 10, "text-wrap": "wrap" } },
      { selector: "edge", style: { width: 2, "curve-style": "bezier", "target-arrow-shape": "triangle" } },
    ],
    layout: { name: "dagre", rankDir: "TB", nodeSep: 20, rankSep: 40 },
  });
  return cy;
};
