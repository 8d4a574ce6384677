"""NaN and infinities propagate exactly as in the oracle, through every op and gradient.

Every op is evaluated on a grid of special inputs (signed zeros, ones, tiny and huge
numbers, ±inf, nan) by both engines; forward values and all gradients must be identical
bit for bit (nan matches nan, and zeros must have the same sign), including when the
gradient arriving from above is itself infinite or nan.
"""

import math
import struct

import pytest
from _support import BINARY_BUILD, UNARY_BUILD, get_engine, needs_native

pytestmark = needs_native

INF, NAN = math.inf, math.nan
SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -2.0, 5e-324, 1e308, -1e308, INF, -INF, NAN]
# what multiplies the output before backward: gives the op an upstream grad of this value
UPSTREAM = [1.0, INF, -INF, NAN, 0.0]

UNARY = {
    **UNARY_BUILD,
    "**2": lambda v: v**2,
    "**-1": lambda v: v**-1,
    "**0.5": lambda v: v**0.5,
    "**0": lambda v: v**0,
    "**inf": lambda v: v**INF,
    "**nan": lambda v: v**NAN,
}
BINARY = BINARY_BUILD


def identical(x, y):
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return struct.pack("<d", x) == struct.pack("<d", y)  # tells -0.0 from 0.0


def run(engine_name, build, inputs, upstream):
    """Builds `build(*leaves) * upstream`, runs backward, returns every number involved."""
    eng = get_engine(engine_name)
    leaves = [eng.Value(x) for x in inputs]
    out = build(*leaves)
    root = out * upstream
    root.backward()
    return [out.data, root.data, out.grad, *(leaf.grad for leaf in leaves)]


def check(build, inputs, what):
    for up in UPSTREAM:
        nat = run("native", build, inputs, up)
        ref = run("reference", build, inputs, up)
        for k, (n, r) in enumerate(zip(nat, ref, strict=True)):
            assert identical(n, r), f"{what}{tuple(inputs)} upstream={up}: #{k} {n!r} != {r!r}"


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_ops(op):
    for x in SPECIAL:
        check(UNARY[op], [x], op)


@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_ops_on_values(op):
    for a in SPECIAL:
        for b in SPECIAL:
            check(BINARY[op], [a, b], op)


@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_ops_with_numbers(op):
    f = BINARY[op]
    for a in SPECIAL:
        for b in SPECIAL:
            check(lambda v, b=b: f(v, b), [a], f"Value {op} {b!r}: ")
            check(lambda v, a=a: f(a, v), [b], f"{a!r} {op} Value: ")


def _engine_of(v):
    return get_engine("native" if isinstance(v, get_engine("native").Value) else "reference")


def test_sum_and_linear():
    for a in SPECIAL:
        for b in SPECIAL:
            check(lambda x, y: _engine_of(x).sum([x, y, x, 1.0]), [a, b], "sum")
            check(lambda x, y: _engine_of(x).linear(y, [x, y], [x, 2.0]), [a, b], "linear")


def test_chain_carries_nan_and_inf_through_gradients():
    # A long chain where an inf appears half-way: everything below must see the same
    # nan/inf grads in both engines.
    def build(x):
        y = x
        for i in range(50):
            y = (y * 1.5 + 1).tanh() if i != 25 else y / 0.0
        return y.exp().log()

    for x in SPECIAL:
        check(build, [x], "chain")


def test_data_and_grad_accept_non_finite():
    for eng in ("native", "reference"):
        v = get_engine(eng).Value(1.0)
        for x in (INF, -INF, NAN):
            v.data = x
            v.grad = x
            assert identical(v.data, x) and identical(v.grad, x)


# ---- the training kit reports non-finite numbers instead of hiding them


def _optimizers():
    from arenagrad import optim

    return {
        "SGD": lambda ps: optim.SGD(ps, lr=0.1),
        "SGD+momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
        "Adam": lambda ps: optim.Adam(ps, lr=0.1),
        "AdamW": lambda ps: optim.AdamW(ps, lr=0.1),
    }


@pytest.mark.parametrize("name", ["SGD", "SGD+momentum", "Adam", "AdamW"])
def test_optimizers_report_non_finite_grads(name):
    results = {}
    for eng in ("native", "reference"):
        ps = [get_engine(eng).Value(x) for x in (1.0, 2.0, 3.0, 4.0)]
        for p, g in zip(ps, (NAN, INF, 1.0, -INF), strict=True):
            p.grad = g
        opt = _optimizers()[name](ps)
        with pytest.warns(
            RuntimeWarning, match=r"non-finite gradients in 3 parameter\(s\): 0, 1, 3"
        ):
            opt.step()
        results[eng] = [p.data for p in ps]
        # the finite parameter is updated normally; the others are not silently finite
        assert math.isfinite(ps[2].data) and ps[2].data < 3.0
        assert not any(math.isfinite(ps[i].data) for i in (0, 1, 3))
    for n, r in zip(results["native"], results["reference"], strict=True):
        assert identical(n, r)


def test_optimizer_reports_an_update_that_overflows():
    from arenagrad import optim

    p = get_engine("native").Value(1e308)
    p.grad = -1e308
    with pytest.warns(RuntimeWarning, match="non-finite updated values in 1 parameter"):
        optim.SGD([p], lr=10.0).step()
    assert p.data == INF


def test_optimizer_with_finite_grads_does_not_warn():
    import warnings

    from arenagrad import optim

    ps = [get_engine("native").Value(x) for x in (1.0, -2.0)]
    for p in ps:
        p.grad = 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optim.Adam(ps, lr=0.1).step()


@pytest.mark.parametrize(
    "fn, x",
    [
        (lambda a: a * NAN, 1.0),  # nan gradient
        (lambda a: a.sqrt(), 0.0),  # inf gradient
        (lambda a: a.log(), -1.0),  # nan forward, finite backward
        (lambda a: a.exp(), 1000.0),  # inf forward and gradient
    ],
)
def test_gradcheck_reports_non_finite(fn, x):
    import arenagrad
    from arenagrad.gradient_check import GradcheckError

    with pytest.raises(GradcheckError, match="input 0"):
        arenagrad.gradcheck(fn, [x])
