"""Graph drawing, as in micrograd's `trace_graph.ipynb`: one record per Value (data, grad) and
one small node per op.

    dot = arenagrad.viz.draw_dot(loss)
    print(dot)              # Graphviz DOT source (a str)
    dot.render("loss.svg")  # needs `pip install graphviz` and Graphviz's `dot` program

It uses only `_prev`, `_op`, `data`, `grad` and `label`, so it draws native and reference
Values alike. The walk is iterative, so deep graphs do not hit Python's recursion limit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["DotGraph", "draw_dot"]


class DotGraph(str):
    """DOT source (it is the `str`), plus rendering to SVG/PNG/PDF through Graphviz."""

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

    def render(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write the rendered graph to `path` (format from its suffix unless given)."""
        path = Path(path)
        format = format or path.suffix.lstrip(".").lower()
        if format not in ("svg", "png", "pdf"):
            raise ValueError(
                f"cannot tell the image format of {str(path)!r}: use .svg, .png or .pdf"
            )
        path.write_bytes(self.pipe(format))
        return path

    def _repr_svg_(self) -> str | None:  # Jupyter shows the picture when it can be drawn
        try:
            return self.pipe("svg").decode()
        except RuntimeError:
            return None


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


def draw_dot(root: Any, rankdir: str = "LR", max_nodes: int = 10_000) -> DotGraph:
    """The graph that produced `root`, as Graphviz DOT source (micrograd's `draw_dot` layout)."""
    if rankdir not in ("LR", "TB", "RL", "BT"):
        raise ValueError(f"rankdir must be one of LR, TB, RL, BT, got {rankdir!r}")
    nodes, edges = trace(root, max_nodes)
    lines = ["digraph {", f"  graph [rankdir={rankdir}]"]
    for i, v in enumerate(nodes):
        label = getattr(v, "label", "") or ""
        fields = ([_escape(label)] if label else []) + [f"data {v.data:.4f}", f"grad {v.grad:.4f}"]
        lines.append(f'  n{i} [label="{{ {" | ".join(fields)} }}" shape=record]')
        if v._op:
            op = v._op.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'  n{i}_op [label="{op}"]')
            lines.append(f"  n{i}_op -> n{i}")
    for child, parent in edges:
        lines.append(f"  n{child} -> n{parent}_op")
    lines.append("}")
    return DotGraph("\n".join(lines) + "\n")
