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


# ---- micrograd's signature, graphviz's render ------------------------------------------------


def test_micrograd_signature(engine):
    v = engine.Value(2.0) * 3
    for dot in (draw_dot(v, format="png", rankdir="TB"), draw_dot(v, "png", "TB")):
        assert "rankdir=TB" in dot and dot.image_format == "png"
    assert draw_dot(v).image_format == "svg" and "rankdir=LR" in draw_dot(v)
    with pytest.raises(ValueError, match="format must be one of svg, png, pdf"):
        draw_dot(v, format="jpg")
    with pytest.raises(ValueError, match="rankdir"):
        draw_dot(v, "svg", "sideways")


@pytest.fixture
def fake_dot(monkeypatch):
    """Rendering with graphviz's `dot` replaced by a stand-in that names the format (the paths
    and files `render` writes do not depend on the real program)."""
    from arenagrad.viz import DotGraph

    monkeypatch.setattr(DotGraph, "pipe", lambda self, format="svg": f"<{format}>".encode())


def test_render_without_suffix_works_as_graphviz_does(tmp_path, fake_dot):
    dot = draw_dot(arenagrad.Value(1.0) * 2)
    out = dot.render(tmp_path / "gout")
    assert out == tmp_path / "gout.svg" and out.read_bytes() == b"<svg>"
    assert (tmp_path / "gout").read_text() == str(dot)  # the DOT source, as graphviz writes it
    out = draw_dot(arenagrad.Value(1.0), format="png").render(str(tmp_path / "pic"))
    assert out == tmp_path / "pic.png" and out.read_bytes() == b"<png>"
    out = dot.render(tmp_path / "graph.gv", format="pdf", cleanup=True)
    assert out == tmp_path / "graph.gv.pdf" and not (tmp_path / "graph.gv").exists()
    # An image suffix: just the image, in that format.
    assert dot.render(tmp_path / "g.PNG").read_bytes() == b"<png>"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "g.PNG", "gout", "gout.svg", "graph.gv.pdf", "pic", "pic.png"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="image format"):
        dot.render(tmp_path / "g.jpeg")
    with pytest.raises(ValueError, match="format must be one of"):
        dot.render(tmp_path / "g", format="gif")


@pytest.mark.skipif(CAN_RENDER, reason="graphviz and dot are installed")
def test_render_without_graphviz_writes_no_file(tmp_path):
    with pytest.raises(RuntimeError, match="graphviz"):
        draw_dot(arenagrad.Value(1.0) + 1).render(tmp_path / "gout")
    assert list(tmp_path.iterdir()) == []  # not even the DOT source


@pytest.mark.skipif(not CAN_RENDER, reason="needs the graphviz package and the dot binary")
def test_render_gout_with_graphviz(tmp_path):
    out = draw_dot(arenagrad.Value(1.0, label="x") * 3).render(tmp_path / "gout")
    assert out == tmp_path / "gout.svg" and "<svg" in out.read_text()
    assert (tmp_path / "gout").read_text().startswith("digraph {")


# ---- fused linear nodes ----------------------------------------------------------------------


def records(dot):
    """{node name: record text}."""
    return dict(re.findall(r'(n\d+) \[label="\{ (.*?) \}" shape=record\]', dot))


def test_neuron_parameters_are_labelled_in_the_linear_node(native):
    import random

    from arenagrad.nn import MLP

    random.seed(0)
    model = MLP(3, [1])
    neuron = model.layers[0].neurons[0]
    assert [w.label for w in neuron.w] == ["w0", "w1", "w2"] and neuron.b.label == "b"
    out = model([arenagrad.Value(0.5), arenagrad.Value(-1.0), arenagrad.Value(2.0)])
    dot = draw_dot(out)
    first = [text.split(" | ")[0] for text in records(dot).values()]
    assert sorted(t for t in first if not t.startswith("data ")) == ["b", "w0", "w1", "w2"]
    assert len(first) == 4 + 3 + 1  # and unlabelled: the 3 inputs and the result
    assert re.findall(r'^  n\d+_op \[label="(.*?)"\]', dot, re.M) == ["linear"]
    # The native Value gives its operands in order too (`_children`): one edge per role.
    assert sorted(re.findall(r'-> n\d+_op \[label="(\w+)"\]', dot)) == [
        "b", "w0", "w1", "w2", "x0", "x1", "x2"
    ]


def test_linear_edges_name_each_operand_when_the_order_is_known(engine):
    # Both engines keep a node's operands in order (`_children`): each edge says b, w_i or x_i.
    V = engine.Value
    b, w0, w1, x0, x1 = V(0.5), V(2.0), V(3.0), V(-1.0), V(4.0)
    dot = draw_dot(engine.linear(b, [w0, w1], [x0, x1]))
    name_of = {text.split(" | ")[0]: node for node, text in records(dot).items()}
    roles = dict(re.findall(r'(n\d+) -> n\d+_op \[label="(\w+)"\]', dot))
    assert {roles[name_of[f"data {v.data:.4f}"]] for v in (b,)} == {"b"}
    for v, role in [(w0, "w0"), (w1, "w1"), (x0, "x0"), (x1, "x1")]:
        assert roles[name_of[f"data {v.data:.4f}"]] == role
    assert dot.count("->") == 1 + 5  # op -> result, one labelled edge per operand
    # The same Value as weight and input: two edges, one per role.
    w = V(1.5)
    twice = draw_dot(engine.linear(0.0, [w], [w]))
    assert sorted(re.findall(r'label="(\w\d?)"\]', twice)) == ["b", "w0", "x0"]
