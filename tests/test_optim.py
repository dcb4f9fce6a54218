"""Optimizers, clipping and schedulers against PyTorch, step for step; and a small network that learns."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

import tinygrad_lstm.nn as nn
import tinygrad_lstm.nn.functional as F
from tinygrad_lstm import Tensor, default_dtype, manual_seed, optim
from tinygrad_lstm.nn import Parameter

torch = pytest.importorskip("torch")

rng = np.random.default_rng(2)


def _problem():
    """A small least-squares-plus-tanh problem with two parameter tensors (one feeds the other)."""
    w0 = rng.standard_normal((3, 4))
    b0 = rng.standard_normal(3)
    x = rng.standard_normal((8, 4))
    y = rng.standard_normal((8, 3))
    return w0, b0, x, y


def _loss_ours(w, b, x, y):
    z = (Tensor(x) @ w.T + b).tanh()
    return ((z - Tensor(y)) ** 2).mean()


def _loss_torch(w, b, x, y):
    z = torch.tanh(torch.tensor(x) @ w.T + b)
    return ((z - torch.tensor(y)) ** 2).mean()


def _run(ours_cls, torch_cls, kwargs, steps=20, groups=False, dtype=np.float64):
    w0, b0, x, y = _problem()
    w, b = Parameter(w0.astype(dtype)), Parameter(b0.astype(dtype))
    tw = torch.tensor(w0.astype(dtype), requires_grad=True)
    tb = torch.tensor(b0.astype(dtype), requires_grad=True)
    if groups:  # the second group overrides lr
        opt = ours_cls([{"params": [w]}, {"params": [b], "lr": 0.05}], **kwargs)
        topt = torch_cls([{"params": [tw]}, {"params": [tb], "lr": 0.05}], **kwargs)
    else:
        opt, topt = ours_cls([w, b], **kwargs), torch_cls([tw, tb], **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        topt.zero_grad()
        _loss_ours(w, b, x.astype(dtype), y.astype(dtype)).backward()
        _loss_torch(tw, tb, x.astype(dtype), y.astype(dtype)).backward()
        opt.step()
        topt.step()
    opt.start = (w0, b0)
    return (w, b), (tw, tb), opt


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True, eps=1e-6)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True, alpha=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, eps=1e-4)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.2)),
]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
@pytest.mark.parametrize("groups", [False, True])
def test_optimizers_match_torch_for_20_steps(name, kwargs, groups):
    ours, theirs, opt = _run(getattr(optim, name), getattr(torch.optim, name), kwargs, groups=groups)
    for p, tp, start in zip(ours, theirs, opt.start):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-6, atol=1e-9)
        # the parameters really moved: equality is not trivially met by two optimizers that do nothing
        assert np.abs(p.data - start).max() > 1e-3


@pytest.mark.parametrize("name,kwargs", CASES[::3], ids=[n for n, _ in CASES[::3]])
def test_float32_params_stay_float32(name, kwargs):
    (w, b), (tw, _), opt = _run(getattr(optim, name), getattr(torch.optim, name), kwargs, dtype=np.float32)
    assert w.dtype == np.float32 and b.dtype == np.float32
    for s in opt.state.values():
        for v in s.values():
            if isinstance(v, np.ndarray):
                assert v.dtype == np.float32
    np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_parameters_actually_move_and_skip_params_without_grad():
    a, b = Parameter(np.ones(3)), Parameter(np.ones(3))
    opt = optim.Adam([a, b], lr=0.1)
    (a * 2.0).sum().backward()
    opt.step()
    assert (a.data < 1).all()
    np.testing.assert_array_equal(b.data, 1.0)  # no grad: untouched, no state
    assert id(b) not in opt.state or not opt.state[id(b)]
    opt.zero_grad()
    assert a.grad is None


def test_optimizer_argument_errors():
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr"):
        optim.Adam([p], lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(TypeError, match=r"model\.parameters"):
        optim.SGD(nn.Linear(2, 2), lr=0.1)
    with pytest.raises(TypeError, match="not a Tensor"):
        optim.SGD([p, 3.0], lr=0.1)


@pytest.mark.parametrize("name,kwargs", [CASES[2], CASES[7], CASES[13], CASES[15]], ids=lambda c: str(c)[:12])
def test_optimizer_state_dict_round_trip_continues_identically(name, kwargs):
    cls = getattr(optim, name)
    w0, b0, x, y = _problem()

    def fresh():
        w, b = Parameter(w0.copy()), Parameter(b0.copy())
        return w, b, cls([w, b], **kwargs)

    def steps(w, b, opt, n):
        for _ in range(n):
            opt.zero_grad()
            _loss_ours(w, b, x, y).backward()
            opt.step()

    w, b, opt = fresh()
    steps(w, b, opt, 5)
    sd = opt.state_dict()
    assert sorted(sd) == ["param_groups", "state"] and sd["param_groups"][0]["params"] == [0, 1]
    w2, b2, opt2 = fresh()
    w2.data, b2.data = w.data.copy(), b.data.copy()
    opt2.load_state_dict(sd)
    steps(w, b, opt, 5)
    steps(w2, b2, opt2, 5)
    np.testing.assert_array_equal(w.data, w2.data)
    np.testing.assert_array_equal(b.data, b2.data)


def test_optimizer_load_state_dict_errors_leave_it_unchanged():
    p, q = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = optim.Adam([p, q], lr=0.1)
    (p.sum() + q.sum()).backward()
    opt.step()
    sd = opt.state_dict()
    before = opt.state_dict()
    bad = {"state": {0: {**sd["state"][0], "exp_avg": np.zeros(5)}}, "param_groups": sd["param_groups"]}
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="param groups"):
        opt.load_state_dict({"state": {}, "param_groups": sd["param_groups"] * 2})
    with pytest.raises(ValueError, match="lr"):
        opt.load_state_dict({"state": {}, "param_groups": [{**sd["param_groups"][0], "lr": -1.0}]})
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    np.testing.assert_array_equal(after["state"][0]["exp_avg"], before["state"][0]["exp_avg"])


# ------------------------------------------------------------------------------------------------ clipping


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    ps = [Parameter(np.zeros_like(g)) for g in grads]
    tps = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, tp, g in zip(ps, tps, grads):
        p.grad = g.copy()
        tp.grad = torch.tensor(g)
    total = optim.clip_grad_norm_(ps, max_norm, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type)
    assert total == pytest.approx(ttotal.item(), rel=1e-12) and isinstance(total.item(), float)
    for p, tp in zip(ps, tps):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12)
    if max_norm == 0.5:  # clipping happened: the new norm is max_norm
        new = optim.clip_grad_norm_(ps, 1e9, norm_type)
        assert new == pytest.approx(max_norm, rel=1e-5)


def test_clip_grad_norm_nonfinite_and_value_clipping():
    p = Parameter(np.zeros(3))
    p.grad = np.array([1.0, np.inf, 0.0])
    with pytest.raises(RuntimeError, match="non"):
        optim.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    q = Parameter(np.zeros(4, np.float32))
    q.grad = np.array([-3.0, -0.5, 0.2, 7.0], np.float32)
    optim.clip_grad_value_([q], 1.0)
    np.testing.assert_array_equal(q.grad, np.array([-1.0, -0.5, 0.2, 1.0], np.float32))
    assert q.grad.dtype == np.float32
    assert optim.clip_grad_norm_([Parameter(np.zeros(2))], 1.0) == 0.0  # no gradients at all


# ------------------------------------------------------------------------------------------------ schedulers


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("StepLR", dict(step_size=3)),
        ("StepLR", dict(step_size=2, gamma=0.5)),
        ("ExponentialLR", dict(gamma=0.9)),
        ("CosineAnnealingLR", dict(T_max=7)),
        ("CosineAnnealingLR", dict(T_max=5, eta_min=0.01)),
    ],
)
def test_schedulers_match_torch(name, kwargs):
    p = Parameter(np.zeros(1))
    tp = torch.zeros(1, requires_grad=True)
    opt = optim.SGD([{"params": [p]}, {"params": [Parameter(np.zeros(1))], "lr": 0.3}], lr=0.1)
    topt = torch.optim.SGD([{"params": [tp]}, {"params": [torch.zeros(1, requires_grad=True)], "lr": 0.3}], lr=0.1)
    s = getattr(optim, name)(opt, **kwargs)
    ts = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    assert s.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
    for _ in range(25):  # past T_max: the cosine restarts upwards
        opt.step()
        topt.step()
        s.step()
        ts.step()
        assert s.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12, abs=1e-15)
        assert [g["lr"] for g in opt.param_groups] == s.get_last_lr()


# ------------------------------------------------------------------------------------------------ learning


def _xor_data(n=256, noise=0.1, seed=0):
    r = np.random.default_rng(seed)
    x = r.integers(0, 2, (n, 2)).astype(np.float64)
    y = (x[:, 0] != x[:, 1]).astype(np.float64)[:, None]
    return x + noise * r.standard_normal(x.shape), y


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: optim.SGD(ps, lr=0.5, momentum=0.9),
        lambda ps: optim.Adam(ps, lr=0.05),
    ],
    ids=["sgd-momentum", "adam"],
)
def test_mlp_learns_xor(make_opt):
    manual_seed(0)
    with default_dtype(np.float64):
        model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
    x, y = _xor_data()
    opt = make_opt(model.parameters())
    start = time.perf_counter()
    for _ in range(300):
        opt.zero_grad()
        p = F.sigmoid(model(Tensor(x)))
        loss = F.binary_cross_entropy(p, y)
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - start
    xt, yt = _xor_data(seed=1)
    acc = ((model(Tensor(xt)).data > 0) == (yt > 0.5)).mean()
    assert acc >= 0.98, f"accuracy {acc}"
    assert loss.item() < 0.1
    assert elapsed < 5.0
