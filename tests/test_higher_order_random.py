"""Random expression DAGs (test_random_graphs.py's recipes, drawing every op of the table),
differentiated two and three times: the native engine against the oracle (1e-12 relative),
and both against torch.autograd.grad(create_graph=True) when torch is installed."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from _support import assert_same, get_engine, needs_native
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_random_graphs import OPS, build, recipes

# A Python _backward cannot be differentiated twice (test_user_ops_grad.py); a microgpt-style
# op's second derivative through its constant local gradients is 0, which torch's is not.
TWICE = [op for op in OPS if op != "py_backward"]
TWICE_LIKE_TORCH = [op for op in TWICE if op != "local_grads"]

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def higher_derivatives(engine, nodes, root, leaves):
    """Gradient, Hessian, and the third derivatives d/dx_j of d2 f / dx_0 dx_i: the gradient
    as Values, each Hessian row as numbers, one Hessian row again as Values."""
    grad = engine.module.grad
    first = grad(nodes[root], leaves, create_graph=True, allow_unused=True)
    hessian = [list(grad(g, leaves, allow_unused=True)) for g in first]
    row = grad(first[0], leaves, create_graph=True, allow_unused=True)
    third = [list(grad(h, leaves, allow_unused=True)) for h in row]
    return [g.data for g in first], hessian, third


def flat(derivs):
    first, hessian, third = derivs
    return [*first, *(x for row in hessian for x in row), *(x for row in third for x in row)]


@needs_native
@SETTINGS
@given(recipe=recipes(max_steps=20, ops=TWICE))
def test_random_dag_derivatives_match_the_oracle(recipe):
    leaves_data = recipe[0]
    results = []
    for name in ("native", "reference"):
        engine = get_engine(name)
        nodes = build(engine, recipe)
        leaves = nodes[: len(leaves_data)]
        results.append(flat(higher_derivatives(engine, nodes, recipe[2], leaves)))
        # the gradient as numbers is backward()'s, and the gradient graph holds them
        numbers = engine.module.grad(nodes[recipe[2]], leaves, allow_unused=True)
        nodes[recipe[2]].backward()
        for k, leaf in enumerate(leaves):
            assert numbers[k] == leaf.grad or (math.isnan(numbers[k]) and math.isnan(leaf.grad))
            got = results[-1][k]
            assert got == numbers[k] or (math.isnan(got) and math.isnan(numbers[k]))
    for k, (got, want) in enumerate(zip(*results, strict=True)):
        assert_same(got, want, f"derivative #{k}")


# ----------------------------------------------------------------------------- torch

moderate = st.floats(-2.0, 2.0).filter(lambda x: abs(x) > 1e-3)


@st.composite
def smooth_recipes(draw):
    """Recipes whose leaves are moderate and nonzero, so that most values are finite; the
    test skips the others (torch and micrograd differ on 0 * inf, deliberately)."""
    leaves, steps, root, passes = draw(recipes(max_steps=15, ops=TWICE_LIKE_TORCH))
    leaves = [draw(moderate) for _ in leaves]
    return leaves, steps, root, passes


def torch_engine(torch):
    def linear(b, ws, xs):
        acc = b if isinstance(b, torch.Tensor) else torch.tensor(float(b), dtype=torch.float64)
        for w, x in zip(ws, xs, strict=True):
            acc = acc + w * x
        return acc

    def total(vs):
        acc = torch.zeros((), dtype=torch.float64)  # sum([]) is a node too
        for v in vs:
            acc = acc + v
        return acc

    return SimpleNamespace(
        Value=lambda x: torch.tensor(x, dtype=torch.float64, requires_grad=True),
        linear=linear,
        sum=total,
        step=lambda t: (t > 0).to(torch.float64),
        take=lambda vs, i: torch.stack(list(vs))[i.long()],
        max=lambda vs: torch.stack(list(vs)).max(dim=0).values,  # the first largest
    )


def torch_build(torch, recipe):
    """test_random_graphs.build, with PyTorch's ops for the table's helper ops."""
    helpers = {
        "step": lambda t: (t > 0).to(torch.float64),
        "sign": torch.sign,
        "mask": lambda t: torch.where(t != 0, t, torch.zeros_like(t)),
        "detach": lambda t: t.detach(),
    }
    return build(torch_engine(torch), recipe, unary=helpers)


def torch_higher_derivatives(torch, nodes, root, leaves):
    def grad(f, create_graph):
        if not (isinstance(f, torch.Tensor) and f.requires_grad):
            return [torch.zeros((), dtype=torch.float64) for _ in leaves]
        return list(
            torch.autograd.grad(
                f,
                leaves,
                retain_graph=True,
                create_graph=create_graph,
                allow_unused=True,
                materialize_grads=True,
            )
        )

    first = grad(nodes[root], True)
    hessian = [[x.item() for x in grad(g, False)] for g in first]
    row = grad(first[0], True)
    third = [[x.item() for x in grad(h, False)] for h in row]
    return [g.item() for g in first], hessian, third


@SETTINGS
@given(recipe=smooth_recipes())
def test_random_dag_derivatives_match_torch(recipe):
    torch = pytest.importorskip("torch")
    engine = get_engine("native") if get_engine_available() else get_engine("reference")
    nodes = build(engine, recipe)
    assume(all(abs(n.data) <= 100.0 for n in nodes))  # also: no inf or nan
    leaves = nodes[: len(recipe[0])]
    ours = flat(higher_derivatives(engine, nodes, recipe[2], leaves))
    assume(all(math.isfinite(x) for x in ours))
    tnodes = torch_build(torch, recipe)
    theirs = flat(torch_higher_derivatives(torch, tnodes, recipe[2], tnodes[: len(recipe[0])]))
    # Not to the last bits: torch decomposes some derivatives otherwise (its div backward is
    # g / b where the table has (1 / b) * g; its tanh's second derivative multiplies in
    # another order), and where the math cancels (1 - tanh(x)**2 for a large x, a difference
    # of large terms) those last bits grow. A wrong derivative is off by far more.
    scale = max(1.0, *(abs(n.data) for n in nodes), *(abs(x) for x in ours))
    for k, (got, want) in enumerate(zip(ours, theirs, strict=True)):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12 * scale), (k, got, want)


def get_engine_available():
    try:
        get_engine("native")
    except pytest.skip.Exception:
        return False
    return True
