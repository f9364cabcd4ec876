"""Graph layout: Graphviz's dot when installed (.ci/run installs it), the built-in layered
layout otherwise; labels are never cut; the selected node is marked. Fast: no pipeline."""

from __future__ import annotations

import re

import pytest

from beam_pipeline.views import graph as g

LONG = "ModelEvaluation #12345 of a very long name"


def diamond() -> g.Graph:
    graph = g.Graph()
    for name in ("a", "b", "c", "d"):
        graph.add(g.Node(name, LONG if name == "d" else name, status="completed"))
    for s, d in (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")):
        graph.link(s, d)
    return graph


def boxes(svg: str) -> dict[str, tuple[float, float, float]]:
    found = re.findall(
        r'data-id="(\w)".*?<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"', svg, flags=re.S
    )
    return {i: (float(x), float(y), float(w)) for i, x, y, w in found}


@pytest.mark.parametrize("engine", ["dot", "layers"])
def test_layered_left_to_right_and_top_to_bottom(engine: str) -> None:
    if engine == "dot" and not g.dot_available():
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    lr = g.render(diamond(), engine=engine, selected="d")
    assert f'data-engine="{engine}"' in lr
    b = boxes(lr)
    assert b["a"][0] < b["b"][0] < b["d"][0] and b["b"][0] == b["c"][0]  # layers by depth
    assert b["b"][1] != b["c"][1]
    assert f">{LONG}</text>" in lr and b["d"][2] >= 7 * len(LONG)  # the whole label fits
    assert lr.count('class="edge"') == 4 and 'data-selected="1"' in lr
    assert re.search(r'class="node execution completed selected" data-id="d"', lr)
    tb = boxes(g.render(diamond(), engine=engine, rankdir="TB"))
    assert tb["a"][1] < tb["b"][1] < tb["d"][1] and tb["b"][1] == tb["c"][1]


def test_labels_are_escaped_and_an_empty_graph_says_so() -> None:
    graph = g.Graph()
    graph.add(g.Node("x", "<script>", detail="a & b"))
    drawn = g.render(graph)
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn and "a &amp; b" in drawn
    assert "nothing to draw" in g.render(g.Graph())
