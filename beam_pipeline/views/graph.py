"""Directed acyclic graphs drawn as inline SVG: a run's stages, a model's lineage.

Layout: each node goes in the column of its longest path from a source (left to right), nodes of
a column are stacked in the order given. Good enough for pipelines of tens of nodes, and it needs
no layout engine.
"""

from __future__ import annotations

import html
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


def _columns(graph: Graph) -> dict[str, int]:
    ids = [n.id for n in graph.nodes]
    parents: dict[str, list[str]] = {i: [] for i in ids}
    for s, d in graph.edges:
        if s in parents and d in parents:
            parents[d].append(s)
    col: dict[str, int] = {}

    def depth(i: str, seen: frozenset[str]) -> int:
        if i in col:
            return col[i]
        if i in seen:  # a cycle would be a bug upstream; do not loop on it
            return 0
        col[i] = max((depth(p, seen | {i}) + 1 for p in parents[i]), default=0)
        return col[i]

    for i in ids:
        depth(i, frozenset())
    return col


def render(graph: Graph, *, title: str = "", node_w: int = 124, node_h: int = 40) -> str:
    """The graph as one ``<svg>``; each node is a ``<g class="node" data-id=…>``."""
    if not graph.nodes:
        return '<p class="muted">nothing to draw</p>'
    col = _columns(graph)
    by_col: dict[int, list[Node]] = {}
    for n in graph.nodes:
        by_col.setdefault(col[n.id], []).append(n)
    gap_x, gap_y, pad = 32, 16, 10
    ncols = max(by_col) + 1
    nrows = max(len(v) for v in by_col.values())
    width = pad * 2 + ncols * node_w + (ncols - 1) * gap_x
    height = pad * 2 + nrows * node_h + (nrows - 1) * gap_y + (20 if title else 0)
    y0 = pad + (20 if title else 0)
    pos: dict[str, tuple[float, float]] = {}
    for c, nodes in by_col.items():
        offset = (nrows - len(nodes)) * (node_h + gap_y) / 2
        for r, n in enumerate(nodes):
            pos[n.id] = (pad + c * (node_w + gap_x), y0 + offset + r * (node_h + gap_y))
    parts = [
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{html.escape(title)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#888"/></marker></defs>',
    ]
    if title:
        parts.append(
            f'<text x="{pad}" y="{pad + 10}" font-size="12" font-weight="600">'
            f"{html.escape(title)}</text>"
        )
    for s, d in graph.edges:
        if s not in pos or d not in pos:
            continue
        (x1, y1), (x2, y2) = pos[s], pos[d]
        ax, ay = x1 + node_w, y1 + node_h / 2
        bx, by = x2, y2 + node_h / 2
        mx = (ax + bx) / 2
        parts.append(
            f'<path class="edge" data-from="{html.escape(s)}" data-to="{html.escape(d)}" '
            f'd="M {ax:.1f} {ay:.1f} C {mx:.1f} {ay:.1f}, {mx:.1f} {by:.1f}, {bx:.1f} {by:.1f}" '
            'fill="none" stroke="#888" stroke-width="1.3" marker-end="url(#arrow)"/>'
        )
    for n in graph.nodes:
        x, y = pos[n.id]
        fill = COLORS.get(n.status, COLORS["artifact"] if n.kind == "artifact" else "#f4f4f4")
        rx = 12 if n.kind == "artifact" else 3
        stroke = "#b00" if n.status in ("failed", "FAILED") else "#666"
        label = n.label if len(n.label) <= 18 else n.label[:17] + "…"
        detail = n.detail if len(n.detail) <= 22 else n.detail[:21] + "…"
        box = (
            f'<g class="node {n.kind} {html.escape(n.status)}" data-id="{html.escape(n.id)}" '
            f'data-label="{html.escape(n.label)}" data-status="{html.escape(n.status)}">'
            f"<title>{html.escape(n.label)}"
            + (f" ({html.escape(n.status)})" if n.status else "")
            + (f"\n{html.escape(n.detail)}" if n.detail else "")
            + "</title>"
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{node_w}" height="{node_h}" rx="{rx}" '
            f'fill="{fill}" stroke="{stroke}"/>'
            f'<text x="{x + node_w / 2:.1f}" y="{y + 16:.1f}" font-size="12" '
            f'text-anchor="middle">{html.escape(label)}</text>'
            f'<text x="{x + node_w / 2:.1f}" y="{y + 31:.1f}" font-size="10" fill="#555" '
            f'text-anchor="middle">{html.escape(detail)}</text></g>'
        )
        if n.href:
            box = f'<a href="{html.escape(n.href)}">{box}</a>'
        parts.append(box)
    parts.append("</svg>")
    return "".join(parts)
