"""Optimizers, clipping and schedules: hand-computed steps always, PyTorch when installed."""

from __future__ import annotations

import math
import sys

import arenagrad
import numpy as np
import pytest
from _support import assert_same, needs_native
from arenagrad import optim, schedules

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed (optional)")


def make_params(engine, values, grads):
    params = [engine.Value(v) for v in values]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    return params


# ---------------------------------------------------------------- native gather/scatter


@needs_native
def test_gather_scatter_roundtrip():
    from arenagrad import _core

    ps = [arenagrad.Value(float(i)) for i in range(5)]
    np.testing.assert_array_equal(_core.get_data(ps), [0, 1, 2, 3, 4])
    _core.set_grad(ps, np.arange(5) * 2.0)
    assert [p.grad for p in ps] == [0.0, 2.0, 4.0, 6.0, 8.0]
    np.testing.assert_array_equal(_core.get_grad(ps), [0, 2, 4, 6, 8])
    _core.set_data(ps, [9, 8, 7, 6, 5])  # ints are converted
    assert [p.data for p in ps] == [9.0, 8.0, 7.0, 6.0, 5.0]
    assert _core.get_data([]).shape == (0,)


@needs_native
def test_gather_scatter_errors():
    from arenagrad import _core

    ps = [arenagrad.Value(1.0), arenagrad.Value(2.0)]
    with pytest.raises(TypeError, match="item 1 must be a Value"):
        _core.get_data([ps[0], 3.0])
    with pytest.raises(TypeError, match="sequence of Values"):
        _core.get_grad(42)
    with pytest.raises(ValueError, match="got 2 parameters"):
        _core.set_data(ps, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="got 2 parameters"):
        _core.set_grad(ps, np.zeros((2, 1)))
    with pytest.raises(TypeError, match="float array"):
        _core.set_data(ps, ["a", "b"])
    assert [p.data for p in ps] == [1.0, 2.0]  # failed calls changed nothing


@needs_native
def test_gather_survives_compaction():
    # Parameters kept alive across many dead temporaries get moved by compaction.
    ps = [arenagrad.Value(float(i)) for i in range(3)]
    for _ in range(3):
        junk = [p * 2 for p in ps for _ in range(30_000)]
        keep = junk[-1]
        del junk
        arenagrad._core.compact()
        del keep
    np.testing.assert_array_equal(arenagrad._core.get_data(ps), [0, 1, 2])


# ---------------------------------------------------------------- hand-computed steps


def test_sgd_plain_and_weight_decay(engine):
    ps = make_params(engine, [1.0, -2.0], [0.5, 0.25])
    opt = optim.SGD(ps, lr=0.1, weight_decay=0.01)
    opt.step()
    # p - lr * (g + wd * p)
    assert_same(ps[0].data, 1.0 - 0.1 * (0.5 + 0.01 * 1.0))
    assert_same(ps[1].data, -2.0 - 0.1 * (0.25 + 0.01 * -2.0))
    assert opt.state["step"] == 1


def test_sgd_momentum_and_nesterov(engine):
    for nesterov in (False, True):
        ps = make_params(engine, [1.0], [1.0])
        opt = optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=nesterov)
        opt.step()  # buf = g = 1
        first = 1.0 - 0.1 * (1.0 + 0.9 * 1.0 if nesterov else 1.0)
        assert_same(ps[0].data, first)
        ps[0].grad = 2.0
        opt.step()  # buf = 0.9 * 1 + 2 = 2.9
        step = 2.0 + 0.9 * 2.9 if nesterov else 2.9
        assert_same(ps[0].data, first - 0.1 * step)


def test_adam_first_steps_by_hand(engine):
    ps = make_params(engine, [0.5], [0.2])
    opt = optim.Adam(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    opt.step()
    # Step 1 with bias correction: m_hat = g, v_hat = g^2 -> update = lr * g / (|g| + eps)
    assert_same(ps[0].data, 0.5 - 0.01 * 0.2 / (0.2 + 1e-8), rel=1e-14)
    ps[0].grad = -0.1
    opt.step()
    m = 0.9 * 0.1 * 0.2 + 0.1 * -0.1
    v = 0.999 * 0.001 * 0.04 + 0.001 * 0.01
    first = 0.5 - 0.01 * 0.2 / (0.2 + 1e-8)
    expected = first - 0.01 / (1 - 0.9**2) * m / (math.sqrt(v) / math.sqrt(1 - 0.999**2) + 1e-8)
    assert_same(ps[0].data, expected, rel=1e-13)


def test_adam_vs_adamw_weight_decay(engine):
    a = make_params(engine, [2.0], [0.0])
    w = make_params(engine, [2.0], [0.0])
    optim.Adam(a, lr=0.1, weight_decay=0.5).step()
    optim.AdamW(w, lr=0.1, weight_decay=0.5).step()
    # Adam: the decay enters the gradient (g = 1), normalised away to a full lr step.
    assert_same(a[0].data, 2.0 - 0.1 * 1.0 / (1.0 + 1e-8), rel=1e-14)
    # AdamW: only the decoupled shrink moves a parameter with zero gradient.
    assert_same(w[0].data, 2.0 * (1 - 0.1 * 0.5))


def test_zero_grad_and_many_params(engine):
    rng = np.random.default_rng(0)
    values, grads = rng.normal(size=300), rng.normal(size=300)
    ps = make_params(engine, values, grads)
    opt = optim.SGD(ps, lr=0.5)
    opt.step()
    np.testing.assert_allclose([p.data for p in ps], values - 0.5 * grads, rtol=1e-15)
    opt.zero_grad()
    assert all(p.grad == 0.0 for p in ps)


def test_module_parameters_accepted(engine):
    model = engine.MLP(3, [4, 1])
    opt = optim.Adam(model, lr=0.1)  # a Module stands for its parameters
    assert len(opt.params) == len(model.parameters()) == 21


def test_state_dict_roundtrip(engine):
    ps = make_params(engine, [1.0, 2.0], [0.3, -0.7])
    opt = optim.Adam(ps, lr=0.05)
    opt.step()
    saved = opt.state_dict()
    ps2 = make_params(engine, [p.data for p in ps], [0.3, -0.7])
    opt2 = optim.Adam(ps2, lr=0.9)
    opt2.load_state_dict(saved)
    assert opt2.lr == 0.05 and opt2.state["step"] == 1
    opt.step()
    opt2.step()
    assert [p.data for p in ps] == [p.data for p in ps2]
    saved["state"]["exp_avg"][0] = 123.0  # a copy: the optimizer is unaffected
    assert opt.state["exp_avg"][0] != 123.0


def test_state_dict_mismatch_errors():
    ps = [arenagrad.Value(1.0)]
    sgd = optim.SGD(ps, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="from a SGD optimizer, not a Adam"):
        optim.Adam(ps).load_state_dict(sgd.state_dict())
    state = optim.Adam(ps).state_dict()
    with pytest.raises(ValueError, match="shape"):
        optim.Adam([arenagrad.Value(1.0), arenagrad.Value(2.0)]).load_state_dict(state)
    with pytest.raises(TypeError):
        optim.Adam(ps).load_state_dict([1, 2])


def test_bad_arguments():
    p = [arenagrad.Value(1.0)]
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="parameter 1 must be a Value"):
        optim.SGD([p[0], 3.0], lr=0.1)
    with pytest.raises(TypeError, match="Module or an iterable"):
        optim.Adam(5)
    with pytest.raises(ValueError, match="invalid lr"):
        optim.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="invalid lr"):
        optim.SGD(p, lr=float("nan"))
    with pytest.raises(TypeError, match="lr must be a real number"):
        optim.SGD(p, lr="0.1")
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="betas"):
        optim.Adam(p, betas=0.9)


# ---------------------------------------------------------------- against PyTorch


def run_ours(engine, cls, kwargs, init, grads):
    ps = [engine.Value(v) for v in init]
    opt = cls(ps, **kwargs)
    for g in grads:
        for p, gi in zip(ps, g, strict=True):
            p.grad = gi
        opt.step()
    return np.array([p.data for p in ps])


def run_torch(cls, kwargs, init, grads):
    p = torch.nn.Parameter(torch.tensor(init, dtype=torch.float64))
    opt = cls([p], **kwargs)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.03, betas=(0.5, 0.9), weight_decay=0.3)),
]


@needs_torch
@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_matches_pytorch(engine, name, kwargs):
    rng = np.random.default_rng(42)
    init = rng.normal(size=7).tolist()
    grads = rng.normal(size=(12, 7)).tolist()
    ours = run_ours(engine, getattr(optim, name), kwargs, init, grads)
    theirs = run_torch(getattr(torch.optim, name), dict(kwargs, foreach=False), init, grads)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- clipping


def test_clip_grad_norm(engine):
    ps = make_params(engine, [0.0, 0.0], [3.0, 4.0])
    total = optim.clip_grad_norm_(ps, max_norm=1.0)
    assert total == 5.0
    scale = 1.0 / (5.0 + 1e-6)
    assert_same(ps[0].grad, 3.0 * scale)
    assert_same(ps[1].grad, 4.0 * scale)
    # Under the limit: unchanged.
    ps = make_params(engine, [0.0, 0.0], [0.3, 0.4])
    assert_same(optim.clip_grad_norm_(ps, max_norm=1.0), 0.5)
    assert [p.grad for p in ps] == [0.3, 0.4]
    # inf-norm
    ps = make_params(engine, [0.0, 0.0], [-3.0, 2.0])
    assert optim.clip_grad_norm_(ps, max_norm=1.5, norm_type=math.inf) == 3.0
    assert_same(ps[0].grad, -3.0 * 1.5 / (3.0 + 1e-6))


def test_clip_grad_norm_nonfinite_is_reported(engine):
    ps = make_params(engine, [0.0, 0.0, 0.0], [1.0, float("nan"), 2.0])
    with pytest.raises(FloatingPointError, match="parameters 1"):
        optim.clip_grad_norm_(ps, max_norm=1.0)
    assert ps[0].grad == 1.0  # not silently scaled by nan
    with pytest.warns(RuntimeWarning, match="nan"):
        total = optim.clip_grad_norm_(ps, max_norm=1.0, error_if_nonfinite=False)
    assert math.isnan(total)
    assert [ps[0].grad, ps[2].grad] == [1.0, 2.0]
    ps = make_params(engine, [0.0], [float("inf")])
    with pytest.raises(FloatingPointError, match="inf"):
        optim.clip_grad_norm_(ps, max_norm=1.0)


@needs_torch
def test_clip_grad_norm_matches_pytorch():
    rng = np.random.default_rng(3)
    g = rng.normal(size=20) * 5
    ps = make_params(arenagrad, np.zeros(20), g)
    total = optim.clip_grad_norm_(ps, max_norm=2.0)
    t = torch.nn.Parameter(torch.zeros(20, dtype=torch.float64))
    t.grad = torch.tensor(g, dtype=torch.float64)
    t_total = torch.nn.utils.clip_grad_norm_([t], max_norm=2.0, foreach=False)
    assert_same(total, float(t_total), rel=1e-14)
    np.testing.assert_allclose([p.grad for p in ps], t.grad.numpy(), rtol=1e-14)


def test_clip_grad_value(engine):
    ps = make_params(engine, [0.0] * 4, [-5.0, 0.5, 3.0, -0.1])
    optim.clip_grad_value_(ps, 1.0)
    assert [p.grad for p in ps] == [-1.0, 0.5, 1.0, -0.1]
    with pytest.raises(ValueError):
        optim.clip_grad_value_(ps, -1.0)


# ---------------------------------------------------------------- schedules


def lrs(schedule, opt, n):
    out = [opt.lr]
    for _ in range(n):
        out.append(schedule.step())
    return out


def test_schedules_by_hand():
    opt = optim.SGD([arenagrad.Value(0.0)], lr=1.0)
    assert lrs(schedules.StepLR(opt, step_size=2, gamma=0.5), opt, 5) == [
        1,
        1,
        0.5,
        0.5,
        0.25,
        0.25,
    ]
    opt.lr = 2.0
    assert lrs(schedules.ExponentialLR(opt, gamma=0.5), opt, 3) == [2.0, 1.0, 0.5, 0.25]
    opt.lr = 1.0
    got = lrs(schedules.CosineAnnealingLR(opt, T_max=4, eta_min=0.1), opt, 5)
    want = [0.1 + 0.9 * (1 + math.cos(math.pi * min(k, 4) / 4)) / 2 for k in range(6)]
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert got[4] == got[5] == pytest.approx(0.1)
    opt.lr = 1.0
    got = lrs(schedules.LinearWarmup(opt, warmup_steps=4, start_factor=0.2), opt, 6)
    np.testing.assert_allclose(got, [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0])


def test_micrograd_schedule_is_the_notebook_formula():
    opt = optim.SGD([arenagrad.Value(0.0)], lr=1.0)
    sched = schedules.MicrogradLR(opt, total_steps=100)
    got = lrs(sched, opt, 99)
    assert got == [1.0 - 0.9 * k / 100 for k in range(100)]  # bit-exact


def test_schedule_state_and_errors():
    opt = optim.SGD([arenagrad.Value(0.0)], lr=1.0)
    sched = schedules.StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    sched.step()
    state = sched.state_dict()
    opt2 = optim.SGD([arenagrad.Value(0.0)], lr=1.0)
    sched2 = schedules.StepLR(opt2, step_size=1, gamma=0.5)
    sched2.load_state_dict(state)
    assert opt2.lr == opt.lr == 0.25
    with pytest.raises(ValueError, match="step_size"):
        schedules.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        schedules.CosineAnnealingLR(opt, T_max=1.5)
    with pytest.raises(TypeError, match="optimizer"):
        schedules.ExponentialLR(object(), gamma=0.9)


def test_exponential_schedules_never_overflow_in_between():
    from fractions import Fraction

    opt = optim.SGD([arenagrad.Value(0.0)], lr=1.0)
    # gamma**2 alone is beyond the float range: inf (the true rate), not OverflowError.
    assert lrs(schedules.ExponentialLR(opt, gamma=1e200), opt, 3) == [1, 1e200, math.inf, math.inf]
    opt.lr = 1e-300  # the product is finite although gamma**k is not
    assert lrs(schedules.ExponentialLR(opt, gamma=1e200), opt, 3) == [1e-300, 1e-100, 1e100, 1e300]
    opt.lr = 1e300  # nor does gamma**k underflow to 0 while the product is a normal float
    assert lrs(schedules.ExponentialLR(opt, gamma=1e-200), opt, 3) == [1e300, 1e100, 1e-100, 1e-300]
    opt.lr = 1e300
    assert lrs(schedules.StepLR(opt, step_size=2, gamma=1e-200), opt, 4)[-1] == 1e-100
    opt.lr = 1.0
    assert lrs(schedules.StepLR(opt, step_size=1, gamma=1e300), opt, 2) == [1.0, 1e300, math.inf]
    opt.lr = 1.0
    far = schedules.ExponentialLR(opt, gamma=1.0001)
    assert far.lr_at(10**30) == math.inf and schedules.ExponentialLR(opt, 0.5).lr_at(10**30) == 0
    # Against exact rational arithmetic: within a few ulps wherever the plain formula fails.
    rng = np.random.default_rng(5)
    for _ in range(300):
        base, gamma = 10 ** rng.uniform(-300, 0), 10 ** rng.uniform(1, 300)
        k = int(rng.integers(2, 60))
        opt.lr = base
        got = schedules.ExponentialLR(opt, gamma).lr_at(k)
        exact = Fraction(base) * Fraction(gamma) ** k
        if exact > Fraction(sys.float_info.max):
            assert got == math.inf
        else:
            assert got == pytest.approx(float(exact), rel=1e-14, abs=0)


def test_schedule_arguments_that_can_never_work_are_refused():
    opt = optim.SGD([arenagrad.Value(0.0)], lr=1.0)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        schedules.ExponentialLR(opt, gamma=-0.5)  # the rate would change sign every step
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        schedules.StepLR(opt, step_size=1, gamma=-2.0)
    with pytest.raises(ValueError, match="gamma must be a finite"):
        schedules.ExponentialLR(opt, gamma=10**400)  # float() of it overflows
    with pytest.raises(ValueError, match="eta_min"):
        schedules.CosineAnnealingLR(opt, T_max=3, eta_min=-0.1)
    opt.lr = math.inf
    with pytest.raises(ValueError, match="optimizer's lr"):
        schedules.CosineAnnealingLR(opt, T_max=3)  # inf * 0 at the end: nan
    opt.lr = 1.0
    sched = schedules.StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    for bad in [
        {"base_lr": float("nan"), "last_step": 1},
        {"base_lr": -1.0, "last_step": 1},
        {"base_lr": 1.0, "last_step": -1},
        {"base_lr": 1.0, "last_step": 1.5},
        {"base_lr": 1.0},
    ]:
        with pytest.raises((ValueError, TypeError)):
            sched.load_state_dict(bad)
        assert (sched.base_lr, sched.last_step, opt.lr) == (1.0, 1, 0.5)  # unchanged


def test_micrograd_schedule_holds_after_total_steps():
    opt = optim.SGD([arenagrad.Value(0.0)], lr=1.0)
    got = lrs(schedules.MicrogradLR(opt, total_steps=10), opt, 30)
    assert got[:11] == [1.0 - 0.9 * k / 10 for k in range(11)]
    assert got[10:] == [pytest.approx(0.1)] * 21 and min(got) > 0  # never negative


@needs_torch
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (
            lambda o: schedules.StepLR(o, 3, 0.3),
            lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.3),
        ),
        (
            lambda o: schedules.ExponentialLR(o, 0.9),
            lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9),
        ),
        (
            lambda o: schedules.CosineAnnealingLR(o, 10, 0.01),
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10, 0.01),
        ),
        (
            lambda o: schedules.LinearWarmup(o, 5, 0.25),
            lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.25, 1.0, 5),
        ),
    ],
)
def test_schedules_match_pytorch(ours, theirs):
    opt = optim.SGD([arenagrad.Value(0.0)], lr=0.5)
    sched = ours(opt)
    t_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    t_sched = theirs(t_opt)
    for _ in range(10):
        assert opt.lr == pytest.approx(t_opt.param_groups[0]["lr"], rel=1e-12)
        t_opt.step()
        t_sched.step()
        sched.step()


def test_training_through_compiled_replay_matches_eager():
    # The same model trained twice, eagerly and through a compiled per-sample loss: the
    # optimizer only sees .grad, so both runs must agree step for step.
    import random

    from arenagrad import losses
    from arenagrad.nn import MLP

    rng = np.random.default_rng(5)
    X = rng.normal(size=(16, 3))
    y = np.sin(X.sum(axis=1))

    def make():
        random.seed(11)
        model = MLP(3, [4, 1])
        return model, optim.Adam(model.parameters(), lr=0.05)

    eager, eager_opt = make()
    replayed, replay_opt = make()
    f = arenagrad.compile(lambda a, b, c, t: losses.mse(replayed([a, b, c]), t), n_inputs=4)
    rows = np.hstack([X, y[:, None]])
    for _ in range(5):
        loss = losses.mse([eager(list(map(arenagrad.Value, x))) for x in X.tolist()], y.tolist())
        eager_opt.zero_grad()
        loss.backward()
        eager_opt.step()
        per_sample = f.forward(rows)
        replay_opt.zero_grad()
        f.backward(np.full(len(rows), 1.0 / len(rows)))
        replay_opt.step()
        assert_same(per_sample.mean(), loss.data, rel=1e-12)
    np.testing.assert_allclose(
        [p.data for p in replayed.parameters()], [p.data for p in eager.parameters()], rtol=1e-10
    )
