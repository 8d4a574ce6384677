"""Value lifetimes under random interleavings, native engine vs the oracle, step by step.

A hypothesis state machine holds pairs (native Value, oracle Value) built the same way. Each
step creates leaves, builds expressions (mixing in numbers, n-ary sum/linear nodes, labelled
nodes, micrograd-style user ops), drops references in random order, mutates .data/.grad,
calls backward on live roots, runs the garbage collector, buries dead nodes under live ones
and compacts the arena (which renumbers every live Value). After every step each live pair
must agree on data, grad, _op and label, and the arena must hold exactly one live handle per
Value held. When everything is dropped the arena returns to its starting size.
"""

import gc
import math
import os

import pytest
from _support import BINARY_BUILD, UNARY_BUILD, assert_same, get_engine, needs_native
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

pytestmark = needs_native

SPECIAL = [0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, 1e308, -1e-308, 5e-324]
numbers = st.one_of(
    st.floats(-4.0, 4.0, allow_nan=False),
    st.sampled_from(SPECIAL),
    st.integers(-3, 3),
)

BINARY = BINARY_BUILD
UNARY = UNARY_BUILD
EXPONENTS = [2, 3, -1, 0, 0.5, -2.0, 1.5, 2.0]


class LifetimeMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.nat = get_engine("native")
        self.ref = get_engine("reference")
        from arenagrad import _core

        self.compact = _core.compact
        self.compact()  # native Values form no cycles: refcounting alone frees them
        start = self.nat.arena_stats()
        self.base_nodes = start["nodes"]
        self.base_live = start["live_values"]
        self.live = {}  # key -> (native Value, oracle Value)
        self.next_key = 0

    # ---- helpers

    def add(self, pair):
        self.live[self.next_key] = pair
        self.next_key += 1

    def pick(self, i):
        keys = sorted(self.live)
        return self.live[keys[i % len(keys)]]

    def pick_key(self, i):
        return sorted(self.live)[i % len(self.live)]

    # ---- building

    @rule(x=numbers)
    def leaf(self, x):
        self.add((self.nat.Value(x), self.ref.Value(x)))

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99), j=st.integers(0, 99), op=st.sampled_from(sorted(BINARY)))
    def binary(self, i, j, op):
        (na, ra), (nb, rb) = self.pick(i), self.pick(j)
        f = BINARY[op]
        self.add((f(na, nb), f(ra, rb)))

    @precondition(lambda self: self.live)
    @rule(
        i=st.integers(0, 99),
        x=numbers,
        op=st.sampled_from(sorted(BINARY)),
        number_first=st.booleans(),
    )
    def with_number(self, i, x, op, number_first):
        na, ra = self.pick(i)
        f = BINARY[op]
        if number_first:
            self.add((f(x, na), f(x, ra)))
        else:
            self.add((f(na, x), f(ra, x)))

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99), op=st.sampled_from(sorted(UNARY)))
    def unary(self, i, op):
        na, ra = self.pick(i)
        f = UNARY[op]
        self.add((f(na), f(ra)))

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99), k=st.sampled_from(EXPONENTS))
    def pow_const(self, i, k):
        na, ra = self.pick(i)
        self.add((na**k, ra**k))

    @precondition(lambda self: self.live)
    @rule(picks=st.lists(st.one_of(st.integers(0, 99), numbers), max_size=6))
    def n_ary_sum(self, picks):
        # an int pick selects a live Value, anything else is a number operand
        items = [self.pick(p) if isinstance(p, int) and p >= 0 else (p, p) for p in picks]
        self.add((self.nat.sum([n for n, _ in items]), self.ref.sum([r for _, r in items])))

    @precondition(lambda self: self.live)
    @rule(
        b=st.one_of(st.integers(0, 99), numbers),
        ws=st.lists(st.integers(0, 99), max_size=4),
        xs=st.data(),
    )
    def linear(self, b, ws, xs):
        xs = xs.draw(
            st.lists(st.one_of(st.integers(0, 99), numbers), min_size=len(ws), max_size=len(ws))
        )
        nb, rb = self.pick(b) if isinstance(b, int) and b >= 0 else (b, b)
        wpairs = [self.pick(w) for w in ws]
        xpairs = [self.pick(x) if isinstance(x, int) and x >= 0 else (x, x) for x in xs]
        self.add(
            (
                self.nat.linear(nb, [n for n, _ in wpairs], [n for n, _ in xpairs]),
                self.ref.linear(rb, [r for _, r in wpairs], [r for _, r in xpairs]),
            )
        )

    @precondition(lambda self: self.live)
    @rule(
        i=st.integers(0, 99),
        j=st.integers(0, 99),
        op=st.sampled_from(sorted(BINARY)),
        label=st.sampled_from(["", "h", "loss"]),
    )
    def labelled(self, i, j, op, label):
        # A node with extras (its label) anywhere in the graph: compaction moves or drops its
        # extras with it, and stops there when it jumps over a run of dead nodes.
        self.binary(i, j, op)
        n, r = self.live[self.next_key - 1]
        n.label = r.label = label

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99), j=st.integers(0, 99))
    def user_op(self, i, j):
        # micrograd's Value(data, _children, _op), here with no _backward: a node with extras
        # that the arena counts (it jumps over dead nodes only once none is left).
        (na, ra), (nb, rb) = self.pick(i), self.pick(j)
        self.add(
            (
                self.nat.Value(na.data * nb.data, (na, nb), "*"),
                self.ref.Value(ra.data * rb.data, (ra, rb), "*"),
            )
        )

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99), length=st.integers(1, 100))
    def chain_then_drop_middle(self, i, length):
        # A chain of temporaries of which only the end survives: dead nodes stuck under a
        # live one, the case that compaction exists for.
        na, ra = self.pick(i)
        for _ in range(length):
            na, ra = na * 0.5 + 1, ra * 0.5 + 1
        self.add((na, ra))

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99))
    def bury_past_compaction_threshold(self, i):
        # > 2**16 dead nodes under a live one: the next op compacts automatically. (A leaf
        # is the anchor because creating one never compacts, while an op would compact
        # right away, with the junk still alive.)
        junk = self.nat.sum(range(70_000))
        self.add((self.nat.Value(1.5), self.ref.Value(1.5)))
        del junk
        na, ra = self.pick(i)
        before = self.nat.arena_stats()["compactions"]
        self.add((na * 2, ra * 2))
        assert self.nat.arena_stats()["compactions"] == before + 1

    # ---- lifetime

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99))
    def drop(self, i):
        del self.live[self.pick_key(i)]

    @precondition(lambda self: self.live)
    @rule(fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
    def drop_many(self, fraction, seed):
        keys = sorted(self.live)
        keys.sort(key=lambda k: (k * 2654435761 + seed) % 2**32)  # a seeded shuffle
        for k in keys[: int(len(keys) * fraction)]:
            del self.live[k]

    @rule(generation=st.sampled_from([0, 0, 1, 2]))
    def collect_garbage(self, generation):
        gc.collect(generation)  # a full collection is slow with hypothesis's heap: rarer

    @rule()
    def compact_now(self):
        self.compact()

    # ---- using

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99))
    def backward(self, i):
        na, ra = self.pick(i)
        na.backward()
        ra.backward()

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99), x=numbers)
    def set_data(self, i, x):
        na, ra = self.pick(i)
        na.data = x
        ra.data = x

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99), x=numbers)
    def set_grad(self, i, x):
        na, ra = self.pick(i)
        na.grad = x
        ra.grad = x

    @precondition(lambda self: self.live)
    @rule(picks=st.lists(st.integers(0, 99), max_size=5))
    def zero_grad(self, picks):
        pairs = [self.pick(p) for p in picks]
        self.nat.module.zero_grad([n for n, _ in pairs])
        for _, r in pairs:
            r.grad = 0.0

    # ---- checks

    @invariant()
    def pairs_agree(self):
        for key, (n, r) in self.live.items():
            assert_same(n.data, r.data, f"data of #{key} ({r._op!r})")
            assert_same(n.grad, r.grad, f"grad of #{key} ({r._op!r})")
            assert n._op == r._op
            assert n.label == r.label

    @invariant()
    def one_handle_per_value_held(self):
        stats = self.nat.arena_stats()
        assert stats["live_values"] == self.base_live + len(self.live)
        assert stats["nodes"] >= stats["live_values"] - self.base_live

    def teardown(self):
        self.live.clear()
        self.compact()
        stats = self.nat.arena_stats()
        assert stats["live_values"] == self.base_live
        assert stats["nodes"] == self.base_nodes


LifetimeMachine.TestCase.settings = settings(
    # the sanitizer job (.ci/sanitize.sh) runs ~5x slower: fewer examples keep it in minutes
    max_examples=50 if os.environ.get("ARENAGRAD_SANITIZED") else 150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLifetimes = pytest.mark.filterwarnings("ignore::RuntimeWarning")(LifetimeMachine.TestCase)
