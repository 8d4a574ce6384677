"""Capture once, replay many: trace a function of Values once, then run it on a whole batch.

    f = arenagrad.compile(fn, n_inputs=k)   # fn(*k Values) -> Value or list of Values
    Y = f.forward(X)                         # X: (B, k) float64, one row per sample (lane)
    dX = f.backward()                        # d(outputs)/dX, (B, k); parameters' .grad += sums

`fn` runs once, on placeholder Values; what it builds is recorded into a tape (cpp/tape.hpp)
that a native replay (`_core.Replay`, cpp/replay_driver.hpp) runs on CPU threads or on a
CUDA device. Values that `fn` uses but did not create (model parameters) are read afresh at
every forward, so the usual training loop works without tracing again. docs/replay.md has the
details and the limits.

This module checks every argument, with messages meant for users; `_core.Replay` checks only
what keeps its memory accesses in bounds.
"""

from __future__ import annotations

import numbers
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, overload

import numpy as np

from . import _core
from ._core import Value

__all__ = ["Compiled", "CompiledPerWidth", "compile"]


def _cuda_unavailable() -> str | None:
    """Why device="cuda" cannot be used here, or None if it can."""
    if not _core.cuda_compiled:
        return "this build of arenagrad has no CUDA support (built without a CUDA toolkit)"
    count, why = _core.cuda_devices()
    return None if count > 0 else f"no usable CUDA device ({why})"


def _as_matrix(array: Any, cols: int, what: str) -> np.ndarray:
    """A C-contiguous float64 (rows, cols) array, or a clear TypeError/ValueError."""
    if (  # already one: the common case, checked first (a training step makes four calls)
        type(array) is np.ndarray
        and array.dtype == np.float64
        and array.ndim == 2
        and array.shape[1] == cols
        and array.flags.c_contiguous
    ):
        return array
    if isinstance(array, np.ndarray):
        if _refuse_not_real(array, what).dtype != np.float64:
            raise TypeError(
                f"{what} must be a float64 array, not {array.dtype} (use {what}.astype(np.float64))"
            )
    else:
        try:
            array = _refuse_not_real(np.asarray(array), what).astype(np.float64, copy=False)
        except _NotReal:
            raise
        except (TypeError, ValueError) as error:
            raise TypeError(f"{what} must be a float64 array of shape (batch, {cols})") from error
    if array.ndim != 2 or array.shape[1] != cols:
        raise ValueError(f"{what} must have shape (batch, {cols}), not {array.shape}")
    return np.ascontiguousarray(array)


# forward()'s X when fn takes no inputs: one lane (read-only, never written).
_ONE_LANE_NO_INPUTS = np.empty((1, 0))
_ONE_LANE_NO_INPUTS.flags.writeable = False


class Compiled:
    """A traced function, replayed over batches. Made by `arenagrad.compile`."""

    def __init__(
        self,
        replay: _core.Replay,
        single_output: bool,
        name: str,
        take_limits: Sequence[int] = (),
    ) -> None:
        self._replay = replay
        self._single = single_output
        self._name = name
        self._batch: int | None = None
        # The replay's last len(take_limits) outputs are take() indices that depend on the
        # inputs: each must be an integer in [0, limit) in every lane.
        self._take_limits = np.asarray(take_limits, dtype=np.float64)
        self._n_outputs = replay.n_outputs - len(take_limits)

    @property
    def n_inputs(self) -> int:
        return self._replay.n_inputs

    @property
    def n_outputs(self) -> int:
        return self._n_outputs

    @property
    def n_nodes(self) -> int:
        """Ops on the tape: those computed per lane plus those computed once per forward."""
        return self._replay.n_lane_nodes + self._replay.n_invariant_nodes

    @property
    def n_lane_nodes(self) -> int:
        """Ops that depend on the inputs, computed for every lane."""
        return self._replay.n_lane_nodes

    @property
    def n_invariant_nodes(self) -> int:
        """Ops that depend only on parameters and constants, computed once per forward."""
        return self._replay.n_invariant_nodes

    @property
    def parameters(self) -> list[Value]:
        """The Values `fn` used without creating them: read at every forward, and given the
        lane-summed gradient at every backward."""
        return self._replay.externals

    @property
    def device(self) -> str:
        return self._replay.device

    def forward(self, X: Any = None) -> np.ndarray:
        """Run `fn` on every row of X (shape (B, n_inputs), float64). Returns shape (B,) for a
        function returning one Value, (B, m) for one returning a list of m Values.
        X may be left out when n_inputs == 0 (one lane)."""
        if X is None:
            if self.n_inputs != 0:
                raise TypeError(f"forward() needs X of shape (batch, {self.n_inputs})")
            X = _ONE_LANE_NO_INPUTS
        Y = self._replay.forward(_as_matrix(X, self.n_inputs, "X"))
        self._batch = None
        if self._take_limits.size:
            self._check_take_indices(Y[:, self._n_outputs :])
            Y = Y[:, : self._n_outputs]
        self._batch = Y.shape[0]
        return Y[:, 0] if self._single else Y

    def _check_take_indices(self, indices: np.ndarray) -> None:
        """take() selects nothing for an index that is not an integer in range (its value is
        nan): say which lane had one, instead of returning that nan."""
        with np.errstate(invalid="ignore"):
            good = (indices >= 0) & (indices < self._take_limits) & (indices == np.floor(indices))
        if not good.all():
            lane, which = (int(k) for k in np.argwhere(~good)[0])
            raise ValueError(
                f"take(): in lane {lane} (row {lane} of X) an index is {indices[lane, which]!r}, "
                f"not an integer in [0, {int(self._take_limits[which])}): the values of that "
                "lane are not defined"
            )

    __call__ = forward

    def backward(self, seed: Any = None) -> np.ndarray:
        """Backpropagate the last forward: each lane's outputs get gradient `seed` (default
        ones; else an array shaped like forward's result). Returns the inputs' gradients,
        shape (B, n_inputs), and adds into every parameter's .grad its sum over lanes."""
        if self._batch is None:
            raise RuntimeError("backward() needs a forward() first")
        if (  # a float64 vector of the batch's length for a one-output function: the common case
            self._single
            and type(seed) is np.ndarray
            and seed.dtype == np.float64
            and seed.shape == (self._batch,)
            and seed.flags.c_contiguous
            and not self._take_limits.size
        ):
            return self._replay.backward(seed.reshape(-1, 1))
        if seed is not None:
            if self._single:
                shape = getattr(seed, "shape", None)
                if shape is not None and len(shape) != 1:
                    raise ValueError(f"seed must have shape ({self._batch},), not {shape}")
                seed = np.reshape(_as_vector(seed), (-1, 1))
            seed = _as_matrix(seed, self.n_outputs, "seed")
            if seed.shape[0] != self._batch:
                expected = (self._batch,) if self._single else (self._batch, self.n_outputs)
                raise ValueError(f"seed must have shape {expected} like forward's result")
        if self._take_limits.size:  # the indices' outputs get no gradient
            if seed is None:
                seed = np.ones((self._batch, self.n_outputs))
            zeros = np.zeros((self._batch, self._take_limits.size))
            seed = np.ascontiguousarray(np.concatenate([seed, zeros], axis=1))
        return self._replay.backward(seed)

    def zero_grad(self) -> None:
        """Set .grad = 0 on every parameter (one native call instead of a Python loop)."""
        self._replay.zero_grad()

    def sgd_step(self, learning_rate: float) -> None:
        """`p.data -= learning_rate * p.grad` for every parameter, in one native call (the
        same arithmetic as micrograd's update loop)."""
        # float() would give a Value's data, or drop a numpy complex's imaginary part
        complex_only = not isinstance(learning_rate, numbers.Real) and isinstance(
            learning_rate, numbers.Complex
        )
        if isinstance(learning_rate, Value) or complex_only:
            kind = type(learning_rate).__name__
            raise TypeError(f"learning_rate must be a real number, not {kind!r}")
        self._replay.sgd_step(float(learning_rate))

    def __repr__(self) -> str:
        return (
            f"Compiled({self._name}, n_inputs={self.n_inputs}, n_outputs={self.n_outputs}, "
            f"n_nodes={self.n_nodes}, parameters={len(self._replay.externals)}, "
            f"device={self.device!r})"
        )


class CompiledPerWidth:
    """A function of any number of inputs, traced once per input width (the graph of a
    sequence model depends on the sequence's length). Made by `arenagrad.compile(fn,
    n_inputs=None)`.

    `forward(X)` replays the trace for X's width, tracing `fn` on X.shape[1] placeholders the
    first time that width is seen; the `max_traces` widths used last keep their traces (a
    bounded cache: the least recently used one is dropped first). `backward` backpropagates
    the last forward, through the same trace.
    """

    def __init__(self, fn: Callable[..., Value | Sequence[Value]], device: str, max_traces: int):
        self._fn = fn
        self._device = device
        self.max_traces = max_traces
        self._traces: OrderedDict[int, Compiled] = OrderedDict()
        self._last: Compiled | None = None
        self.traced = 0  # how many times fn was traced (a width dropped and used again: twice)

    def trace_for(self, width: int) -> Compiled:
        """The trace for `width` inputs, made now if the cache has none."""
        if isinstance(width, bool) or not isinstance(width, int) or width < 0:
            raise ValueError(f"an input width must be an int >= 0, not {width!r}")
        compiled = self._traces.get(width)
        if compiled is None:
            compiled = _trace(self._fn, width, self._device)
            self.traced += 1
            self._traces[width] = compiled
            while len(self._traces) > self.max_traces:
                self._traces.popitem(last=False)
        self._traces.move_to_end(width)
        return compiled

    @property
    def widths(self) -> list[int]:
        """The widths that have a trace now, least recently used first."""
        return list(self._traces)

    @property
    def parameters(self) -> list[Value]:
        """The parameters of every trace kept, each once."""
        seen: dict[int, Value] = {}
        for compiled in self._traces.values():
            for p in compiled.parameters:
                seen.setdefault(id(p), p)
        return list(seen.values())

    def forward(self, X: Any) -> np.ndarray:
        """Replays `fn` on every row of X (shape (B, width), float64), as Compiled.forward."""
        if not isinstance(X, np.ndarray):
            try:
                X = np.asarray(X, dtype=np.float64)
            except (TypeError, ValueError) as error:
                raise TypeError("X must be a float64 array of shape (batch, width)") from error
        if X.ndim != 2:
            raise ValueError(f"X must have shape (batch, width), not {X.shape}")
        self._last = None
        compiled = self.trace_for(int(X.shape[1]))
        Y = compiled.forward(X)
        self._last = compiled
        return Y

    __call__ = forward

    def backward(self, seed: Any = None) -> np.ndarray:
        """Backpropagates the last forward, as Compiled.backward."""
        if self._last is None:
            raise RuntimeError("backward() needs a forward() first")
        return self._last.backward(seed)

    def zero_grad(self) -> None:
        """Set .grad = 0 on every parameter of every trace kept."""
        for compiled in self._traces.values():
            compiled.zero_grad()

    def __repr__(self) -> str:
        name = getattr(self._fn, "__qualname__", None) or type(self._fn).__name__
        return f"CompiledPerWidth({name}, widths={self.widths}, max_traces={self.max_traces})"


def _as_vector(seed: Any) -> np.ndarray:
    if isinstance(seed, np.ndarray):
        if seed.dtype != np.float64:
            raise TypeError(f"seed must be a float64 array, not {seed.dtype}")
        return seed
    return _refuse_not_real(np.asarray(seed), "seed").astype(np.float64, copy=False)


class _NotReal(TypeError):
    """Complex numbers or Values where real numbers are needed."""


def _refuse_not_real(array: np.ndarray, what: str) -> np.ndarray:
    """`array`, unless numpy's conversion to float would be wrong: complex numbers lose their
    imaginary parts (with only a warning), and Values their graph (float(v) is their data)."""
    if array.dtype.kind == "c":
        raise _NotReal(f"{what} must hold real numbers, not complex ({array.dtype})")
    if array.dtype == object and any(isinstance(v, Value) for v in array.flat):
        raise _NotReal(f"{what} must hold numbers, not Values (give their .data)")
    return array


@overload
def compile(
    fn: Callable[..., Value | Sequence[Value]], n_inputs: int, device: str = "cpu"
) -> Compiled: ...


@overload
def compile(
    fn: Callable[..., Value | Sequence[Value]],
    n_inputs: None = None,
    device: str = "cpu",
    *,
    max_traces: int = 16,
) -> CompiledPerWidth: ...


def compile(
    fn: Callable[..., Value | Sequence[Value]],
    n_inputs: int | None = None,
    device: str = "cpu",
    *,
    max_traces: int = 16,
) -> Compiled | CompiledPerWidth:
    """Trace `fn(*n_inputs Values)` once and return a `Compiled` that replays it on batches.

    `fn` must return a Value (forward gives shape (B,)) or a list/tuple of Values ((B, m)).
    device: "cpu" (threads, see arenagrad.set_num_threads) or "cuda".

    With n_inputs=None, `fn` takes any number of inputs (a sequence, say) and is traced once
    per input width it is replayed at: a `CompiledPerWidth`, which keeps the traces of the
    `max_traces` widths used last.
    """
    if not callable(fn):
        raise TypeError(f"compile() needs a callable, not {type(fn).__name__!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
    if device == "cuda" and (why := _cuda_unavailable()) is not None:
        raise RuntimeError(f"device='cuda' is not available: {why}")
    if n_inputs is None:
        if isinstance(max_traces, bool) or not isinstance(max_traces, int):
            raise TypeError(f"max_traces must be an int, not {type(max_traces).__name__!r}")
        if max_traces < 1:
            raise ValueError(f"max_traces must be >= 1, got {max_traces}")
        return CompiledPerWidth(fn, device, max_traces)
    if isinstance(n_inputs, bool) or not isinstance(n_inputs, int):
        raise TypeError(f"n_inputs must be an int, not {type(n_inputs).__name__!r}")
    if n_inputs < 0:
        raise ValueError(f"n_inputs must be >= 0, got {n_inputs}")
    return _trace(fn, n_inputs, device)


def _trace(fn: Callable[..., Value | Sequence[Value]], n_inputs: int, device: str) -> Compiled:
    """Runs `fn` on n_inputs placeholders and records what it built."""
    # Everything created after the fence is the traced graph; what it uses from below the
    # fence (parameters) becomes the tape's externals.
    fence = Value(0.0)
    inputs = [Value(0.0) for _ in range(n_inputs)]
    _core._trace_begin(fence, n_inputs)
    try:
        result = fn(*inputs)
    finally:
        take_indices = _core._trace_end()
    single = isinstance(result, Value)
    if single:
        outputs: list[Any] = [result]
    elif isinstance(result, (list, tuple)) and result:
        outputs = list(result)
    else:
        raise TypeError(
            f"fn must return a Value or a non-empty list of Values, not {type(result).__name__!r}"
        )
    for i, out in enumerate(outputs):
        if not isinstance(out, Value):
            raise TypeError(f"fn's output {i} must be a Value, not {type(out).__name__!r}")
    # Each take() index built from the inputs becomes an output, checked after every forward
    # (once per Value, against the fewest values it selected from).
    limits: dict[int, tuple[Value, int]] = {}
    for index, count in take_indices:
        known = limits.get(id(index))
        limits[id(index)] = (index, count if known is None else min(count, known[1]))
    checked = list(limits.values())
    # A user-defined op that an output or a take() index depends on holds Python (a
    # `_backward`) or numbers computed from `.data` while tracing (its value and local_grads):
    # a replay could only repeat the traced sample's.
    user_op = _core._not_replayable(fence, outputs + [index for index, _ in checked])
    if user_op is not None:
        name = repr(user_op._op) if user_op._op else "with no _op"
        raise TypeError(
            f"compile() cannot replay the user-defined op {name} that fn uses (made by "
            "Value(data, children, ...)): its value and gradient come from Python code run while "
            "tracing. Build it from arenagrad's ops instead, or run fn eagerly"
        )
    replay = _core.Replay(fence, inputs, outputs + [index for index, _ in checked], device)
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return Compiled(replay, single, name, [count for _, count in checked])
