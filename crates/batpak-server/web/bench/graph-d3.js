// Candidate B: dagre (@dagrejs/dagre) for the layout, d3-selection drawing SVG.
import dagre from "@dagrejs/dagre";
import { select } from "d3-selection";

window.draw = (graph, box) => {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "TB", nodesep: 20, ranksep: 40 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of graph.nodes) g.setNode(n.id, { label: n.label, width: 130, height: 34 });
  for (const e of graph.edges) g.setEdge(e.from, e.to);
  dagre.layout(g);
  const { width, height } = g.graph();
  const svg = select(box).append("svg").attr("viewBox", `0 0 ${width} ${height}`).attr("width", "100%").attr("height", "100%");
  svg
    .selectAll("path")
    .data(g.edges())
    .join("path")
    .attr("d", (e) => "M" + g.edge(e).points.map((p) => `${p.x},${p.y}`).join("L"))
    .attr("fill", "none")
    .attr("stroke", "#52667a");
  const nodes = svg.selectAll("g").data(g.nodes()).join("g").attr("transform", (id) => `translate(${g.node(id).x - 65},${g.node(id).y - 17})`);
  nodes.append("rect").attr("width", 130).attr("height", 34).attr("rx", 6).attr("fill", "#e8eef7").attr("stroke", "#52667a");
  nodes.append("text").attr("x", 65).attr("y", 21).attr("text-anchor", "middle").attr("font-size", 10).text((id) => g.node(id).label);
  return svg;
};
