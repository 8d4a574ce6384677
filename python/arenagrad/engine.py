"""micrograd's `engine` module path: `from arenagrad.engine import Value`.

The Value type itself is native (cpp/value.cpp); docs/semantics.md lists what each op does.
"""

from ._core import Value

__all__ = ["Value"]
