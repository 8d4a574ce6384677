"""Fuzz target for arenagrad's public API (atheris / libFuzzer).

Each input is decoded into a short program: a pool of objects (Values of both engines,
numbers, and hostile objects: strings, containers, numpy arrays, huge ints, objects whose
__float__ raises, or mutates a list, or builds and drops Values, Value subclasses) and a
sequence of actions on it (every op, backward, attribute reads/writes/deletes, sum/linear/
zero_grad over random lists, arenagrad.grad with or without create_graph, user-defined ops
in micrograd's and microgpt's styles, whose Python `_backward` may raise or build and drop
Values, item/float/comparisons/detach, one node's `_backward`, no_grad, copy/pickle, garbage
collection, compaction, dropping objects).

Every action runs on the native engine and on the oracle (`arenagrad.reference`) with
mirrored operands. The contract checked:
  * no crash, no hang (libFuzzer's -timeout);
  * only the documented exceptions: TypeError, ValueError, OverflowError, AttributeError,
    MemoryError, and RuntimeError for a list changed while being read;
  * both engines succeed or both raise; when both build a Value, data and grad agree;
  * when the pool is dropped, the arena returns to its starting size.

Usage:
  python fuzz/fuzz_api.py --runs 20000          # bounded, for CI (~30-60 s on 2 cores)
  python fuzz/fuzz_api.py [libFuzzer flags...]  # open-ended, e.g. -max_total_time=3600
"""

from __future__ import annotations

import contextlib
import copy
import gc
import inspect
import math
import operator
import pickle
import sys
import tempfile

import arenagrad
import arenagrad.reference as reference
import atheris
import numpy as np
from arenagrad import _core

ALLOWED = (
    TypeError, ValueError, IndexError, OverflowError, AttributeError, MemoryError, RuntimeError
)  # IndexError: take() with an index out of range


def op_node(name):
    """A builder for an op that only derivative graphs make (each engine's _op_node)."""

    def build(*operands):
        if isinstance(operands[0], reference.Value):
            return reference._op_node(name, *operands)
        return _core._op_node(name, *operands)

    return build


# How to make each op of the native table (arenagrad._core.op_table), on either engine's Values
# (binary ones also on numbers); several ways where the API has several. A new op without an
# entry here stops the fuzzer at start-up.
UNARY_BUILDERS = {
    "neg": [operator.neg],
    "pow_const": [lambda v: v**0.5, lambda v: v**-1.5],
    "pow_const_int": [lambda v: v**2, lambda v: v**-1],
    "relu": [lambda v: v.relu()],
    "tanh": [lambda v: v.tanh()],
    "exp": [lambda v: v.exp()],
    "log": [lambda v: v.log()],
    "sigmoid": [lambda v: v.sigmoid()],
    "abs": [lambda v: v.abs(), abs],
    "sqrt": [lambda v: v.sqrt()],
    "step": [op_node("step")],
    "sign": [op_node("sign")],
    "detach": [op_node("detach")],
    "mask": [lambda v: op_node("mask")(v, v), lambda v: op_node("mask")(v, v * 0)],
}
BINARY_BUILDERS = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "pow": operator.pow,
}
# Program.step's actions 9, 10, 19, 20, 23 and 24 make these
NARY_ACTIONS = {"sum", "linear", "local_grads", "py_backward", "take", "max"}


def ops_of_arity(arity):
    return [name for name, _, n in _core.op_table if n == arity]


_missing = [
    name
    for name, _, arity in _core.op_table
    if name not in {1: UNARY_BUILDERS, 2: BINARY_BUILDERS, None: NARY_ACTIONS}[arity]
]
if _missing:
    sys.exit(f"fuzz_api.py: no way to build the op(s) {_missing}: add them to its tables")
UNARY = [build for name in ops_of_arity(1) for build in UNARY_BUILDERS[name]]
BINARY = [BINARY_BUILDERS[name] for name in ops_of_arity(2)]
SPECIAL = [0.0, -0.0, 1.0, -1.0, 2.0, 0.5, 1e308, -1e308, 5e-324, math.inf, -math.inf, math.nan]


class RaisingFloat:
    def __float__(self):
        raise ValueError("no float for you")


class BuildsValues:
    """A number whose conversion builds and drops Values and compacts the arena."""

    def __float__(self):
        junk = [arenagrad.Value(1.0) * 2 for _ in range(3)]
        del junk
        _core.compact()
        return 3.0


class ListClearer:
    def __init__(self):
        self.target = []

    def __float__(self):
        self.target.clear()
        return 1.0


class NativeSub(arenagrad.Value):
    pass


class RefSub(reference.Value):
    pass


def same(x, y):
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y))


class Program:
    def __init__(self, fdp: atheris.FuzzedDataProvider):
        self.fdp = fdp
        self.pool: list[tuple[object, object]] = []  # (native side, oracle side)

    # ---- drawing objects

    def number(self):
        kind = self.fdp.ConsumeIntInRange(0, 4)
        if kind == 0:
            return self.fdp.PickValueInList(SPECIAL)
        if kind == 1:
            return self.fdp.ConsumeIntInRange(-5, 5)
        if kind == 2:
            return self.fdp.ConsumeRegularFloat()
        if kind == 3:
            return np.float64(self.fdp.ConsumeFloatInRange(-4.0, 4.0))
        return self.fdp.ConsumeBool()

    def hostile(self):
        """A (native, oracle) pair of non-Value objects, the same object where possible."""
        kind = self.fdp.ConsumeIntInRange(0, 12)
        obj = [
            None,
            "1.0",
            b"2",
            [1.0],
            (1.0, 2.0),
            {"a": 1},
            complex(1, 1),
            2**2000,
            np.array([1.0, 2.0]),
            np.array(3.0),
            RaisingFloat(),
            BuildsValues(),
            object(),
        ][kind]
        return obj, obj

    def new_value(self):
        x = self.number()
        if self.fdp.ConsumeIntInRange(0, 7) == 0:
            return NativeSub(x), RefSub(x)
        return arenagrad.Value(x), reference.Value(x)

    def operand(self):
        """Mostly pool members, sometimes numbers or hostile objects."""
        kind = self.fdp.ConsumeIntInRange(0, 9)
        if kind < 6 and self.pool:
            return self.pool[self.fdp.ConsumeIntInRange(0, len(self.pool) - 1)]
        if kind < 9:
            x = self.number()
            return x, x
        return self.hostile()

    def value_pair(self):
        if not self.pool:
            self.pool.append(self.new_value())
        return self.pool[self.fdp.ConsumeIntInRange(0, len(self.pool) - 1)]

    def operand_list(self):
        n = self.fdp.ConsumeIntInRange(0, 5)
        pairs = [self.operand() for _ in range(n)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    # ---- running one action on both engines

    def both(self, native_fn, oracle_fn):
        results = []
        for fn in (native_fn, oracle_fn):
            try:
                results.append(("ok", fn()))
            except ALLOWED as error:
                results.append(("raised", error))
        (n_kind, n_out), (r_kind, r_out) = results
        if n_kind != r_kind:
            raise AssertionError(f"native {n_kind} {n_out!r} but oracle {r_kind} {r_out!r}")
        if n_kind == "ok" and isinstance(n_out, arenagrad.Value):
            assert isinstance(r_out, reference.Value), (n_out, r_out)
            assert same(n_out.data, r_out.data), (n_out, r_out)
            self.pool.append((n_out, r_out))

    def step(self):
        fdp = self.fdp
        action = fdp.ConsumeIntInRange(0, 24)
        if action == 0:
            self.pool.append(self.new_value())
        elif action == 1:  # Value(anything, label=anything) or Value(anything, anything)
            (n, r), (ln, lr) = self.operand(), self.operand()
            form = fdp.ConsumeIntInRange(0, 2)

            def make(V, x, other):
                return [lambda: V(x), lambda: V(x, label=other), lambda: V(x, other)][form]()

            self.both(lambda: make(arenagrad.Value, n, ln), lambda: make(reference.Value, r, lr))
        elif action in (2, 3):  # binary ops, either side anything
            (an, ar), (bn, br) = self.operand(), self.operand()
            fn = fdp.PickValueInList(BINARY)
            if not isinstance(an, arenagrad.Value) and not isinstance(bn, arenagrad.Value):
                return  # no Value involved: plain Python, not ours to test
            self.both(lambda: fn(an, bn), lambda: fn(ar, br))
        elif action == 4:
            n, r = self.value_pair()
            fn = fdp.PickValueInList(UNARY)
            self.both(lambda: fn(n), lambda: fn(r))
        elif action == 5:
            (n, r), (mn, mr) = self.value_pair(), self.operand()
            self.both(lambda: pow(n, 2, mn), lambda: pow(r, 2, mr))
        elif action == 6:
            n, r = self.value_pair()
            self.both(n.backward, r.backward)
            assert same(n.grad, r.grad), (n, r)
        elif action == 7:  # attribute writes with anything
            (n, r), (xn, xr) = self.value_pair(), self.operand()
            name = fdp.PickValueInList(["data", "grad", "label"])
            self.both(lambda: setattr(n, name, xn), lambda: setattr(r, name, xr))
        elif action == 8:
            n, r = self.value_pair()
            name = fdp.PickValueInList(["data", "grad", "label", "_op", "_prev", "nope"])
            try:
                getattr(n, name)
            except AttributeError:
                assert name == "nope"
            with contextlib.suppress(AttributeError, TypeError):
                delattr(n, name)
            repr(n)
        elif action == 9:
            ns, rs = self.operand_list()
            self.both(lambda: arenagrad.sum(ns), lambda: reference.sum(rs))
        elif action == 10:
            (bn, br) = self.operand()
            wn, wr = self.operand_list()
            xn, xr = self.operand_list()
            if all(isinstance(w, arenagrad.Value) for w in wn):
                self.both(
                    lambda: arenagrad.linear(bn, wn, xn), lambda: reference.linear(br, wr, xr)
                )
            else:  # a known, deliberate difference: the oracle also takes number weights
                try:
                    arenagrad.linear(bn, wn, xn)
                except (TypeError, ValueError, OverflowError):
                    pass
                else:
                    raise AssertionError("linear() accepted a weight that is not a Value")
        elif action == 11:
            ns, rs = self.operand_list()
            with contextlib.suppress(TypeError):
                arenagrad.zero_grad(ns)
        elif action == 12:  # a list that changes while it is read
            n, _ = self.value_pair()
            clearer = ListClearer()
            items = [n, clearer, n]
            clearer.target = items
            with contextlib.suppress(RuntimeError):
                arenagrad.sum(items)
        elif action == 13:
            n, _ = self.value_pair()
            kind = fdp.ConsumeIntInRange(0, 2)
            clone = (copy.copy, copy.deepcopy, lambda v: pickle.loads(pickle.dumps(v)))[kind](n)
            assert clone.data == n.data or (math.isnan(clone.data) and math.isnan(n.data))
            with contextlib.suppress(TypeError, ValueError, OverflowError):
                n.__setstate__(self.operand()[0])
        elif action == 14:
            gc.collect(fdp.ConsumeIntInRange(0, 2))
        elif action == 15:
            _core.compact()
        elif action == 16 and self.pool:  # drop objects, in random order
            for _ in range(fdp.ConsumeIntInRange(1, len(self.pool))):
                del self.pool[fdp.ConsumeIntInRange(0, len(self.pool) - 1)]
        elif action == 17 and self.pool:  # chain below a kept Value, dropping temporaries
            n, r = self.value_pair()
            for _ in range(fdp.ConsumeIntInRange(1, 50)):
                n, r = n * 0.5 + 1, r * 0.5 + 1
            self.pool.append((n, r))
        elif action == 18:
            self.grad()
        elif action == 19:  # microgpt's Value(data, children, local_grads), grads anything
            kids = [self.value_pair() for _ in range(fdp.ConsumeIntInRange(0, 3))]
            grads = [self.operand() for _ in range(fdp.ConsumeIntInRange(0, 3))]
            x = self.number()
            self.both(
                lambda: arenagrad.Value(x, [k[0] for k in kids], [g[0] for g in grads]),
                lambda: reference.Value(x, [k[1] for k in kids], [g[1] for g in grads]),
            )
        elif action == 20:  # micrograd's user op, its `_backward` a closure over itself
            kids = [self.value_pair() for _ in range(fdp.ConsumeIntInRange(0, 3))]
            coefs = [self.number() for _ in kids]
            behaviour = fdp.ConsumeIntInRange(0, 3)  # 0 plain, 1 raises, 2 builds, 3 drops
            x = self.number()
            size = len(self.pool)
            self.both(
                lambda: arenagrad.Value(x, [k[0] for k in kids], "user"),
                lambda: reference.Value(x, [k[1] for k in kids], "user"),
            )
            for side, out in enumerate(self.pool[size:][0] if len(self.pool) > size else ()):
                children = [k[side] for k in kids]
                out._backward = user_backward(out, children, coefs, behaviour, self.pool)
        elif action == 21:  # PyTorch's conveniences and one node's own step
            n, r = self.value_pair()
            (on, orr), what = self.operand(), fdp.ConsumeIntInRange(0, 5)
            compare = fdp.PickValueInList([operator.lt, operator.le, operator.gt, operator.ge])

            def call(v, other):
                if what == 0:
                    return v.item()
                if what == 1:
                    return float(v)
                if what == 2:
                    return compare(v, other)
                if what == 3:
                    return v.detach()
                if what == 4:
                    return v._backward()
                return v.backward(other)

            got = []
            self.both(lambda: got.append(call(n, on)), lambda: got.append(call(r, orr)))
            if len(got) == 2 and what in (0, 1, 2):  # item, float, comparisons: plain values
                assert type(got[0]) is type(got[1]) and same(got[0], got[1]), (what, got)
            elif len(got) == 2 and what == 3:
                self.pool.append((got[0], got[1]))
            if what == 5:  # the root's grad is the seed (others may differ: zero_grad above)
                assert same(n.grad, r.grad), (n, r)
            assert len(n._children) == len(r._children), (n, r)
        elif action == 22:  # an op under no_grad: a leaf on both engines
            (an, ar), (bn, br) = self.value_pair(), self.operand()
            fn = fdp.PickValueInList(BINARY)
            size = len(self.pool)
            with arenagrad.no_grad(), reference.no_grad():
                self.both(lambda: fn(an, bn), lambda: fn(ar, br))
            for n, r in self.pool[size:]:
                assert n._prev == set() and r._prev == set(), (n, r)
        elif action == 23:  # take with any index: a Value, an int, anything
            ns, rs = self.operand_list()
            if fdp.ConsumeBool():
                i_n, i_r = self.operand()
            else:
                i_n = i_r = fdp.ConsumeIntInRange(-2, 5)
            self.both(lambda: arenagrad.take(ns, i_n), lambda: reference.take(rs, i_r))
        elif action == 24:
            ns, rs = self.operand_list()
            self.both(lambda: arenagrad.max(ns), lambda: reference.max(rs))

    def grad(self):
        """arenagrad.grad over pool members (now and then anything else), with random seeds
        and flags; gradients that are Values join the pool, to be differentiated again."""
        fdp = self.fdp
        outs = [self.value_pair() for _ in range(fdp.ConsumeIntInRange(0, 3))]
        ins = [
            self.value_pair() if fdp.ConsumeIntInRange(0, 7) else self.operand()
            for _ in range(fdp.ConsumeIntInRange(0, 3))
        ]
        seeds = None
        if fdp.ConsumeBool():
            seeds = [self.operand() for _ in range(len(outs) + fdp.ConsumeIntInRange(-1, 0))]
        create_graph, allow_unused = fdp.ConsumeBool(), fdp.ConsumeBool()
        results = []
        for side, module in ((0, arenagrad), (1, reference)):
            given = None if seeds is None else [seed[side] for seed in seeds]
            try:
                results.append(
                    (
                        "ok",
                        module.grad(
                            [o[side] for o in outs],
                            [i[side] for i in ins],
                            given,
                            create_graph,
                            allow_unused,
                        ),
                    )
                )
            except ALLOWED as error:
                results.append(("raised", error))
        (n_kind, n_out), (r_kind, r_out) = results
        if n_kind != r_kind:
            raise AssertionError(f"grad: native {n_kind} {n_out!r} but oracle {r_kind} {r_out!r}")
        if n_kind == "raised":  # (as for every action: both raise, not the same type)
            return
        assert len(n_out) == len(r_out) == len(ins)
        for n, r in zip(n_out, r_out, strict=True):
            if create_graph:
                assert isinstance(n, arenagrad.Value) and isinstance(r, reference.Value)
                assert same(n.data, r.data), (n, r)
                self.pool.append((n, r))
            else:
                assert type(n) is float and type(r) is float and same(n, r), (n, r)


def user_backward(out, children, coefs, behaviour, pool):
    """micrograd's `_backward` for a user op: children[i].grad += coefs[i] * out.grad, after
    raising (ValueError, allowed), building Values, or dropping pool members."""

    def _backward():
        if behaviour == 1:
            raise ValueError("from a user's _backward")
        if behaviour == 2:
            junk = [arenagrad.Value(1.0) * 3 for _ in range(5)]
            del junk
        if behaviour == 3 and pool:
            pool.pop()
        for child, c in zip(children, coefs, strict=True):
            child.grad += c * out.grad

    return _backward


def instrument() -> None:
    """Coverage feedback comes from Python code: this harness and the oracle. (The native
    core is not instrumented. instrument_imports() misses this file and is defeated by an
    editable install's import hook; instrument_all() spends a minute on numpy.)"""
    owners = [reference, reference.Value, Program, sys.modules[__name__]]
    for owner in owners:
        for attr in list(vars(owner).values()):
            if inspect.isfunction(attr) and attr.__module__ in (reference.__name__, __name__):
                atheris.instrument_func(attr)
            elif isinstance(attr, property):
                for fn in (attr.fget, attr.fset):
                    if fn is not None:
                        atheris.instrument_func(fn)


BASELINE: dict[str, int] = {}


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    program = Program(fdp)
    for _ in range(fdp.ConsumeIntInRange(1, 40)):
        if fdp.remaining_bytes() == 0:
            break
        program.step()
    program.pool.clear()
    gc.collect()  # a caught exception's traceback holds its frame's Values in a cycle
    _core.compact()
    stats = arenagrad.arena_stats()
    if not BASELINE:
        BASELINE.update(stats)
    assert stats["live_values"] == BASELINE["live_values"], stats
    assert stats["nodes"] == BASELINE["nodes"], stats


def main(argv: list[str]) -> None:
    args = list(argv)
    if "--runs" in args:  # bounded mode for CI
        i = args.index("--runs")
        runs = int(args[i + 1])
        args[i : i + 2] = [f"-runs={runs}"]
    if not any(a.startswith("-timeout=") for a in args):
        args.append("-timeout=20")  # a single input taking this long counts as a hang
    if not any(a.startswith("-len_control=") for a in args):
        args.append("-len_control=0")  # long programs from the start, not after 100k runs
    if not any(a.startswith("-artifact_prefix=") for a in args):  # crashing inputs go here
        args.append(f"-artifact_prefix={tempfile.gettempdir()}/arenagrad-fuzz-")
    instrument()
    gc.freeze()  # imports done: keep them out of the per-input gc.collect() (14 ms -> ~0)
    atheris.Setup(args, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
