"""Graph drawing, as in micrograd's `trace_graph.ipynb`: one record per Value (data, grad) and
one small node per op.

    dot = arenagrad.viz.draw_dot(loss, format="svg", rankdir="LR")  # micrograd's signature
    print(dot)              # Graphviz DOT source (a str)
    dot.render("gout")      # as graphviz: the source in gout, the picture in gout.svg
    dot.render("loss.png")  # or straight to an image file, its format from the suffix

Rendering needs `pip install graphviz` and Graphviz's `dot` program. It uses only `_prev`,
`_op`, `data`, `grad` and `label`, so it draws native and reference Values alike. A fused
`linear` node (b + w0*x0 + w1*x1 + ..., one node per `nn.Neuron`) has many operands: `nn`
labels each neuron's weights w0, w1, ... and its bias b, and where the engine also gives the
operands in order (`_children`, as micrograd calls them), each edge into the node is labelled
with its role (b, w0, x0, ...). The walk is iterative, so deep graphs do not hit Python's
recursion limit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["DotGraph", "draw_dot"]


FORMATS = ("svg", "png", "pdf")
SOURCE_SUFFIXES = ("", ".gv", ".dot")  # paths that name the DOT source, as in graphviz


class DotGraph(str):
    """DOT source (it is the `str`), plus rendering to SVG/PNG/PDF through Graphviz.

    `image_format` is the format `render` uses for a path without an image suffix (what
    `format=` is to a `graphviz.Digraph`; not named `format`, which is `str.format`)."""

    image_format: str

    def __new__(cls, source: str, image_format: str = "svg") -> DotGraph:
        graph = super().__new__(cls, source)
        graph.image_format = _check_format(image_format)
        return graph

    def pipe(self, format: str = "svg") -> bytes:
        """The rendered image's bytes. RuntimeError explains what is missing, if anything."""
        try:
            import graphviz  # type: ignore[import-untyped]
        except ImportError:
            raise RuntimeError(
                "rendering a graph needs the `graphviz` Python package (pip install graphviz) "
                "and Graphviz's `dot` program; the DOT source is available as str(graph)"
            ) from None
        try:
            return bytes(graphviz.Source(str(self)).pipe(format=format))
        except graphviz.ExecutableNotFound:
            raise RuntimeError(
                "rendering a graph needs Graphviz's `dot` program on PATH (Debian/Ubuntu: "
                "apt install graphviz, macOS: brew install graphviz); the DOT source is "
                "available as str(graph)"
            ) from None

    def render(
        self, path: str | os.PathLike[str], format: str | None = None, cleanup: bool = False
    ) -> Path:
        """Render the graph; returns the image's path.

        `path` with an image suffix (.svg, .png, .pdf): the image is written there (in that
        format unless `format` says otherwise). Without a suffix (or .gv, .dot), as graphviz's
        `render`: the DOT source is written to `path` and the image next to it, to
        `path.<format>` (`format`, else the one given to `draw_dot`); `cleanup=True` removes
        the source afterwards.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix.lstrip(".") in FORMATS:
            image = self.pipe(_check_format(format or suffix.lstrip(".")))
            path.write_bytes(image)
            return path
        if suffix not in SOURCE_SUFFIXES:
            raise ValueError(
                f"cannot tell the image format of {str(path)!r}: use .svg, .png or .pdf, or a "
                "name without a suffix (the DOT source there, the image in NAME.svg)"
            )
        format = _check_format(format or self.image_format)
        image = self.pipe(format)  # first: without graphviz, no file is written at all
        path.write_text(str(self))
        target = path.with_name(f"{path.name}.{format}")
        target.write_bytes(image)
        if cleanup:
            path.unlink()
        return target

    def _repr_svg_(self) -> str | None:  # Jupyter shows the picture when it can be drawn
        try:
            return self.pipe("svg").decode()
        except RuntimeError:
            return None


def _check_format(format: Any) -> str:
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    return str(format)


def _escape(text: str) -> str:
    """Text inside a quoted DOT record label."""
    for char in '\\"{}|<>':
        text = text.replace(char, "\\" + char)
    return text


def trace(root: Any, max_nodes: int = 10_000) -> tuple[list[Any], list[tuple[int, int]]]:
    """Every Value reachable from `root` (root first) and the (operand, result) edges between
    them, as indices into that list."""
    if not (hasattr(root, "_prev") and hasattr(root, "_op")):
        raise TypeError(f"draw_dot() needs a Value, not {type(root).__name__!r}")
    # Keyed by id(): holding every visited Value in `nodes` keeps the ids valid (and makes a
    # native node's handle the one `_prev` returns next time, so each node is seen once).
    index: dict[int, int] = {id(root): 0}
    nodes, edges, stack = [root], [], [root]
    while stack:
        v = stack.pop()
        for child in v._prev:
            if id(child) not in index:
                if len(nodes) >= max_nodes:
                    raise ValueError(
                        f"draw_dot(): the graph has more than {max_nodes} nodes; "
                        "pass a larger max_nodes to draw it anyway"
                    )
                index[id(child)] = len(nodes)
                nodes.append(child)
                stack.append(child)
            edges.append((index[id(child)], index[id(v)]))
    return nodes, edges


def _roles(v: Any) -> list[tuple[Any, str]] | None:
    """(operand, role) for each operand of a `linear` node, in order, where the engine says
    the order (`_children`, the op table's: b, w0, x0, w1, x1, ...). None where it does not."""
    ordered = getattr(v, "_children", None)
    if v._op != "linear" or not isinstance(ordered, (tuple, list)) or len(ordered) % 2 != 1:
        return None
    n = len(ordered) // 2
    names = ["b", *(role for i in range(n) for role in (f"w{i}", f"x{i}"))]
    return list(zip(ordered, names, strict=True))


def draw_dot(
    root: Any, format: str = "svg", rankdir: str = "LR", max_nodes: int = 10_000
) -> DotGraph:
    """The graph that produced `root`, as Graphviz DOT source (micrograd's `draw_dot`, with its
    arguments: `format` is what `render` produces for a path without an image suffix)."""
    format = _check_format(format)
    if rankdir not in ("LR", "TB", "RL", "BT"):
        raise ValueError(f"rankdir must be one of LR, TB, RL, BT, got {rankdir!r}")
    nodes, edges = trace(root, max_nodes)
    lines = ["digraph {", f"  graph [rankdir={rankdir}]"]
    index = {id(v): i for i, v in enumerate(nodes)}
    labelled: set[int] = set()  # linear nodes whose edges carry their operands' roles
    role_edges = []
    for i, v in enumerate(nodes):
        label = getattr(v, "label", "") or ""
        fields = ([_escape(label)] if label else []) + [f"data {v.data:.4f}", f"grad {v.grad:.4f}"]
        lines.append(f'  n{i} [label="{{ {" | ".join(fields)} }}" shape=record]')
        if v._op:
            op = v._op.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'  n{i}_op [label="{op}"]')
            lines.append(f"  n{i}_op -> n{i}")
        roles = _roles(v)
        if roles is not None and all(id(operand) in index for operand, _ in roles):
            labelled.add(i)
            role_edges += [f'  n{index[id(x)]} -> n{i}_op [label="{role}"]' for x, role in roles]
    for child, parent in edges:
        if parent not in labelled:
            lines.append(f"  n{child} -> n{parent}_op")
    lines += role_edges
    lines.append("}")
    return DotGraph("\n".join(lines) + "\n", format)
