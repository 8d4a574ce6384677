"""arenagrad.viz.draw_dot: DOT source like micrograd's notebook; rendering when possible."""

from __future__ import annotations

import re
import shutil

import arenagrad
import pytest
from arenagrad.viz import draw_dot

try:
    import graphviz
except ImportError:
    graphviz = None

CAN_RENDER = graphviz is not None and shutil.which("dot") is not None


def test_nodes_edges_and_labels(engine):
    a = engine.Value(2.0, label="a")
    b = engine.Value(-3.0, label="b")
    c = a * b
    d = c + a
    d.backward()
    dot = draw_dot(d)
    assert isinstance(dot, str) and dot.startswith("digraph {")
    records = re.findall(r'(n\d+) \[label="\{ (.*?) \}" shape=record\]', dot)
    assert len(records) == 4  # a, b, c, d; a reached twice but drawn once
    labels = sorted(text for _, text in records)
    assert "a | data 2.0000 | grad -2.0000" in labels
    assert "b | data -3.0000 | grad 2.0000" in labels
    assert "data -6.0000 | grad 1.0000" in labels
    assert "data -4.0000 | grad 1.0000" in labels
    ops = re.findall(r'n\d+_op \[label="(.*?)"\]', dot)
    assert sorted(ops) == ["*", "+"]
    # op node -> its Value (2), operand -> op (4: "a" feeds both ops).
    assert len(re.findall(r"->", dot)) == 2 + 4


def test_labels_are_escaped(engine):
    v = engine.Value(1.0, label='x|{y}"')
    dot = draw_dot(v * 2)
    assert 'x\\|\\{y\\}\\"' in dot


def test_deep_graph_no_recursion_limit():
    v = arenagrad.Value(0.5)
    for _ in range(5000):
        v = v * 1.0
    dot = draw_dot(v, max_nodes=20_000)
    assert dot.count("shape=record") == 10_001  # 5000 products, their 5000 constants, the leaf
    with pytest.raises(ValueError, match="more than 100 nodes"):
        draw_dot(v, max_nodes=100)


def test_bad_arguments():
    with pytest.raises(TypeError, match="needs a Value"):
        draw_dot(3.0)
    with pytest.raises(ValueError, match="rankdir"):
        draw_dot(arenagrad.Value(1.0), rankdir="XY")
    with pytest.raises(ValueError, match="image format"):
        draw_dot(arenagrad.Value(1.0)).render("graph.jpeg")


@pytest.mark.skipif(CAN_RENDER, reason="graphviz and dot are installed")
def test_render_without_graphviz_says_what_to_install(tmp_path):
    with pytest.raises(RuntimeError, match="graphviz"):
        draw_dot(arenagrad.Value(1.0) + 1).render(tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


@pytest.mark.skipif(not CAN_RENDER, reason="needs the graphviz package and the dot binary")
def test_render_svg_and_png(tmp_path):
    dot = draw_dot(arenagrad.Value(1.0, label="x") * 3)
    svg = dot.render(tmp_path / "g.svg").read_text()
    assert "<svg" in svg and "data 3.0000" in svg
    assert (tmp_path / "g.png").exists() is False
    assert dot.render(tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
