"""arenagrad.gradcheck: passes on correct gradients, fails loudly and readably on wrong ones."""

from __future__ import annotations

import math

import arenagrad
import pytest
from arenagrad.gradient_check import GradcheckError


def test_correct_gradients_pass(engine):
    def f(a, b, c):
        return (a * b).tanh() + (c.exp() / (1 + a * a)).log() - b.sigmoid() * c.sqrt()

    worst = arenagrad.gradcheck(f, [0.4, -1.3, 2.2], value_type=engine.Value)
    assert 0.0 <= worst < 1e-6


def test_inputs_may_be_values_and_are_not_modified(engine):
    a, b = engine.Value(1.5), engine.Value(-0.5)
    arenagrad.gradcheck(lambda x, y: x * y * y, [a, b])
    assert (a.data, a.grad, b.data, b.grad) == (1.5, 0.0, -0.5, 0.0)


def test_wrong_gradient_raises_with_a_report():
    # relu's subgradient at 0 is 0, but the two-sided difference of relu at 0 is 1/2.
    with pytest.raises(GradcheckError) as info:
        arenagrad.gradcheck(lambda x, y: x.relu() + y * y, [0.0, 3.0])
    message = str(info.value)
    assert "1 of 2 inputs" in message
    assert "input 0 (x = 0.0)" in message
    assert "expected 0.5 (finite differences), got 0 (backward)" in message
    assert "input 1" not in message


def test_returns_worst_error_under_a_loose_tolerance():
    worst = arenagrad.gradcheck(lambda x: x.relu(), [0.0], tol=0.6)
    assert worst == pytest.approx(0.5)


def test_nonfinite_gradient_is_a_failure():
    with pytest.raises(GradcheckError, match="input 0"):
        arenagrad.gradcheck(lambda x: x.sqrt(), [0.0])  # backward gives inf


def test_bad_arguments():
    with pytest.raises(TypeError, match="callable"):
        arenagrad.gradcheck(3, [1.0])
    with pytest.raises(ValueError, match="no inputs"):
        arenagrad.gradcheck(lambda: arenagrad.Value(1.0), [])
    with pytest.raises(TypeError, match="input 1"):
        arenagrad.gradcheck(lambda a, b: a, [1.0, "x"])
    with pytest.raises(TypeError, match="must return a Value"):
        arenagrad.gradcheck(lambda a: 2.0, [1.0])
    with pytest.raises(ValueError, match="eps"):
        arenagrad.gradcheck(lambda a: a, [1.0], eps=0.0)
    assert math.isfinite(arenagrad.gradcheck(lambda a: a * 2, (1,)))
