"""`no_grad()`: evaluate without building a graph, as `torch.no_grad()` does.

    with arenagrad.no_grad():
        accuracy = evaluate(model, X_test)   # every op returns a leaf Value

    @arenagrad.no_grad()
    def evaluate(model, X): ...

Inside it, every op (`+`, `relu()`, `arenagrad.sum`, `linear`, a user-defined op) returns a new
leaf holding the op's value, so no graph is kept: each temporary is dropped as soon as it dies
and memory stays at the size of the live Values. It applies to the thread that entered it
(like PyTorch's); nesting is allowed. `backward()` still works on graphs built outside it.
"""

from __future__ import annotations

import contextlib
from types import TracebackType

from . import _core

__all__ = ["is_grad_enabled", "no_grad"]

is_grad_enabled = _core.is_grad_enabled


class no_grad(contextlib.ContextDecorator):
    """Context manager (and, as `@no_grad()`, decorator) under which ops build no graph."""

    def __enter__(self) -> no_grad:
        _core._enter_no_grad()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _core._exit_no_grad()
