"""Directed acyclic graphs drawn as inline SVG: a run's stages, a model's lineage.

Layout: Graphviz's ``dot`` (Debian's ``graphviz`` package) places the nodes and routes the edges
(layered, with few crossings); we draw the SVG ourselves from its ``-Tplain`` coordinates, so
every node keeps its classes, data attributes, colours and escaped labels. Without ``dot`` on the
PATH a built-in layered layout is used: each node in the layer of its longest path from a source,
layers ordered by the mean position of their parents (fewer crossings than the insertion order).
Labels are never cut: a node is as wide as its text. ``selected`` marks one node (the artifact a
page is about); the UI scrolls it into the middle of the view.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from dataclasses import dataclass, field

# Node status -> fill colour. Artifacts are drawn as rounded boxes, executions as plain ones.
COLORS = {
    "completed": "#d8f0d8",
    "COMPLETE": "#d8f0d8",
    "cached": "#dde8f8",
    "CACHED": "#dde8f8",
    "failed": "#f8d0d0",
    "FAILED": "#f8d0d0",
    "stopped": "#fbe3c0",
    "running": "#fff5b8",
    "RUNNING": "#fff5b8",
    "skipped": "#eeeeee",
    "CANCELED": "#eeeeee",
    "artifact": "#ffffff",
}


@dataclass
class Node:
    id: str
    label: str
    kind: str = "execution"  # execution | artifact
    status: str = ""
    detail: str = ""  # a second, smaller line
    href: str = ""


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def add(self, node: Node) -> None:
        if all(n.id != node.id for n in self.nodes):
            self.nodes.append(node)

    def link(self, src: str, dst: str) -> None:
        if (src, dst) not in self.edges:
            self.edges.append((src, dst))


CHAR_W = 7.0  # px per character of a 12 px label (system sans-serif), generous
DETAIL_W = 6.0  # of a 10 px detail line
NODE_H = 40
DOT_TIMEOUT = 20


def node_width(n: Node, minimum: int = 110) -> float:
    return max(minimum, CHAR_W * len(n.label) + 16, DETAIL_W * len(n.detail) + 16)


@dataclass
class Layout:
    """Node boxes (x, y of the top-left corner, width) and edge paths in SVG pixels."""

    width: float
    height: float
    boxes: dict[str, tuple[float, float, float]]
    paths: list[tuple[str, str, str]]  # (from, to, SVG path data)
    engine: str


def dot_available() -> bool:
    return shutil.which("dot") is not None


def layout_dot(graph: Graph, rankdir: str) -> Layout | None:
    """Positions from ``dot -Tplain``; None when dot is missing or fails (the caller falls back)."""
    exe = shutil.which("dot")
    if exe is None:
        return None
    ids = {n.id: f"n{i}" for i, n in enumerate(graph.nodes)}
    back = {v: k for k, v in ids.items()}
    lines = [
        "digraph G {",
        f"rankdir={rankdir}; nodesep=0.25; ranksep=0.35;",
        "node [shape=box fixedsize=true];",
    ]
    for n in graph.nodes:
        lines.append(f"{ids[n.id]} [width={node_width(n) / 72:.3f} height={NODE_H / 72:.3f}];")
    for s, d in graph.edges:
        if s in ids and d in ids:
            lines.append(f"{ids[s]} -> {ids[d]};")
    lines.append("}")
    try:
        out = subprocess.run(
            [exe, "-Tplain"],
            input="\n".join(lines),
            capture_output=True,
            text=True,
            timeout=DOT_TIMEOUT,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    pad, k = 10.0, 72.0
    boxes: dict[str, tuple[float, float, float]] = {}
    paths: list[tuple[str, str, str]] = []
    height = width = 0.0
    for line in out.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "graph":
            width, height = float(f[2]) * k + 2 * pad, float(f[3]) * k + 2 * pad
        elif f[0] == "node" and f[1] in back:
            x, y, w, h = (float(v) * k for v in f[2:6])
            boxes[back[f[1]]] = (pad + x - w / 2, height - pad - y - h / 2, w)
        elif f[0] == "edge" and f[1] in back and f[2] in back:
            count = int(f[3])
            pts = [
                (pad + float(f[4 + 2 * i]) * k, height - pad - float(f[5 + 2 * i]) * k)
                for i in range(count)
            ]
            d = f"M {pts[0][0]:.1f} {pts[0][1]:.1f}"
            for i in range(1, len(pts) - 2, 3):
                (ax, ay), (bx, by), (cx, cy) = pts[i : i + 3]
                d += f" C {ax:.1f} {ay:.1f}, {bx:.1f} {by:.1f}, {cx:.1f} {cy:.1f}"
            paths.append((back[f[1]], back[f[2]], d))
    if len(boxes) != len(graph.nodes):
        return None
    return Layout(width, height, boxes, paths, "dot")


def _layers(graph: Graph) -> dict[str, int]:
    ids = [n.id for n in graph.nodes]
    parents: dict[str, list[str]] = {i: [] for i in ids}
    for s, d in graph.edges:
        if s in parents and d in parents:
            parents[d].append(s)
    layer: dict[str, int] = {}

    def depth(i: str, seen: frozenset[str]) -> int:
        if i in layer:
            return layer[i]
        if i in seen:  # a cycle would be a bug upstream; do not loop on it
            return 0
        layer[i] = max((depth(p, seen | {i}) + 1 for p in parents[i]), default=0)
        return layer[i]

    for i in ids:
        depth(i, frozenset())
    return layer


def layout_layers(graph: Graph, rankdir: str) -> Layout:
    """The built-in layered layout (no dot): layers by longest path, ordered by the mean
    position of each node's parents."""
    layer = _layers(graph)
    by_layer: dict[int, list[Node]] = {}
    for n in graph.nodes:
        by_layer.setdefault(layer[n.id], []).append(n)
    parents: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for s, d in graph.edges:
        if s in parents and d in parents:
            parents[d].append(s)
    index: dict[str, float] = {}
    for lv in sorted(by_layer):
        nodes = by_layer[lv]
        if lv:
            nodes.sort(
                key=lambda n: (
                    sum(index.get(p, 0) for p in parents[n.id]) / max(1, len(parents[n.id]))
                )
            )
        for i, n in enumerate(nodes):
            index[n.id] = i
    pad, gap_rank, gap_node = 10.0, 36.0, 16.0
    horizontal = rankdir == "LR"
    widths = {n.id: node_width(n) for n in graph.nodes}
    layer_w = {lv: max(widths[n.id] for n in nodes) for lv, nodes in by_layer.items()}
    boxes: dict[str, tuple[float, float, float]] = {}
    if horizontal:
        across = max(len(v) for v in by_layer.values()) * (NODE_H + gap_node)
        x = pad
        for lv in sorted(by_layer):
            nodes = by_layer[lv]
            y0 = pad + (across - len(nodes) * (NODE_H + gap_node)) / 2
            for i, n in enumerate(nodes):
                boxes[n.id] = (x, y0 + i * (NODE_H + gap_node), widths[n.id])
            x += layer_w[lv] + gap_rank
        width, height = x - gap_rank + pad, across + 2 * pad
    else:
        rows = {lv: sum(widths[n.id] + gap_node for n in nodes) for lv, nodes in by_layer.items()}
        across = max(rows.values())
        y = pad
        for lv in sorted(by_layer):
            x = pad + (across - rows[lv]) / 2
            for n in by_layer[lv]:
                boxes[n.id] = (x, y, widths[n.id])
                x += widths[n.id] + gap_node
            y += NODE_H + gap_rank
        width, height = across + 2 * pad, y - gap_rank + pad
    paths = []
    for s, d in graph.edges:
        if s not in boxes or d not in boxes:
            continue
        (x1, y1, w1), (x2, y2, _) = boxes[s], boxes[d]
        if horizontal:
            ax, ay, bx, by = x1 + w1, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
            mx = (ax + bx) / 2
            path = f"M {ax:.1f} {ay:.1f} C {mx:.1f} {ay:.1f}, {mx:.1f} {by:.1f}, {bx:.1f} {by:.1f}"
        else:
            w2 = boxes[d][2]
            ax, ay, bx, by = x1 + w1 / 2, y1 + NODE_H, x2 + w2 / 2, y2
            my = (ay + by) / 2
            path = f"M {ax:.1f} {ay:.1f} C {ax:.1f} {my:.1f}, {bx:.1f} {my:.1f}, {bx:.1f} {by:.1f}"
        paths.append((s, d, path))
    return Layout(width, height, boxes, paths, "layers")


def render(
    graph: Graph,
    *,
    title: str = "",
    rankdir: str = "LR",
    selected: str = "",
    engine: str = "auto",
) -> str:
    """The graph as one ``<svg>`` (scaled down to its container's width, never cut off); each
    node is a ``<g class="node" data-id=…>``. ``engine``: ``auto`` (dot when installed),
    ``dot`` or ``layers``."""
    if not graph.nodes:
        return '<p class="muted">nothing to draw</p>'
    lay = layout_dot(graph, rankdir) if engine in ("auto", "dot") else None
    if lay is None:
        lay = layout_layers(graph, rankdir)
    top = 22.0 if title else 0.0
    width, height = lay.width, lay.height + top
    parts = [
        f'<svg class="graph" data-engine="{lay.engine}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'style="max-width: 100%; height: auto" role="img" aria-label="{html.escape(title)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#888"/></marker></defs>',
    ]
    if title:
        parts.append(
            f'<text x="10" y="16" font-size="12" font-weight="600">{html.escape(title)}</text>'
        )
    parts.append(f'<g transform="translate(0 {top:.0f})">')
    for s, d, path in lay.paths:
        parts.append(
            f'<path class="edge" data-from="{html.escape(s)}" data-to="{html.escape(d)}" '
            f'd="{path}" fill="none" stroke="#888" stroke-width="1.3" marker-end="url(#arrow)"/>'
        )
    for n in graph.nodes:
        x, y, w = lay.boxes[n.id]
        fill = COLORS.get(n.status, COLORS["artifact"] if n.kind == "artifact" else "#f4f4f4")
        rx = 12 if n.kind == "artifact" else 3
        stroke = "#b00" if n.status in ("failed", "FAILED") else "#666"
        chosen = n.id == selected
        mark = ' data-selected="1"' if chosen else ""
        box = (
            f'<g class="node {n.kind} {html.escape(n.status)}{" selected" if chosen else ""}" '
            f'data-id="{html.escape(n.id)}" data-label="{html.escape(n.label)}" '
            f'data-status="{html.escape(n.status)}"{mark}>'
            f"<title>{html.escape(n.label)}"
            + (f" ({html.escape(n.status)})" if n.status else "")
            + (f"\n{html.escape(n.detail)}" if n.detail else "")
            + "</title>"
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{NODE_H}" rx="{rx}" '
            f'fill="{fill}" stroke="{"#1a5fb4" if chosen else stroke}" '
            f'stroke-width="{3 if chosen else 1}"/>'
            f'<text x="{x + w / 2:.1f}" y="{y + 16:.1f}" font-size="12" '
            f'text-anchor="middle">{html.escape(n.label)}</text>'
            f'<text x="{x + w / 2:.1f}" y="{y + 31:.1f}" font-size="10" fill="#555" '
            f'text-anchor="middle">{html.escape(n.detail)}</text></g>'
        )
        if n.href:
            box = f'<a href="{html.escape(n.href)}">{box}</a>'
        parts.append(box)
    parts.append("</g></svg>")
    return "".join(parts)
