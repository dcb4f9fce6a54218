"""nn.functional against PyTorch (float64, 1e-10): activations and every loss, value and gradient."""

from __future__ import annotations

import numpy as np
import pytest

import tinygrad_lstm.nn.functional as F
from tinygrad_lstm import Tensor, default_dtype, gradcheck, manual_seed

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TOL = dict(rtol=1e-10, atol=1e-10)
rng = np.random.default_rng(0)


def _both(fn_ours, fn_torch, *arrays, grad_args=(0,), grad_tol=TOL, **kwargs):
    """Run both implementations; compare outputs and the gradient of sum(out * v) w.r.t. ``grad_args``."""
    ours_in = [
        Tensor(a.copy(), requires_grad=i in grad_args) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
        for i, a in enumerate(arrays)
    ]
    theirs_in = [
        torch.tensor(a, requires_grad=i in grad_args and a.dtype.kind == "f") if isinstance(a, np.ndarray) else a
        for i, a in enumerate(arrays)
    ]
    out = fn_ours(*ours_in, **kwargs)
    ref = fn_torch(*theirs_in, **kwargs)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), **TOL)
    assert out.shape == tuple(ref.shape)
    if ref.requires_grad:
        v = rng.standard_normal(ref.shape)
        (ref * torch.tensor(v)).sum().backward()
        (out * v).sum().backward()
        for i in grad_args:
            np.testing.assert_allclose(ours_in[i].grad, theirs_in[i].grad.numpy(), **grad_tol)
    return out


def r(*shape):
    return rng.standard_normal(shape)


# ------------------------------------------------------------------------------------------------ activations


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (F.sigmoid, torch.sigmoid),
        (F.tanh, torch.tanh),
        (F.relu, TF.relu),
        (F.leaky_relu, TF.leaky_relu),
        (lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
        (F.hard_sigmoid, TF.hardsigmoid),
        (lambda x: F.softmax(x, 1), lambda x: TF.softmax(x, 1)),
        (lambda x: F.log_softmax(x, 0), lambda x: TF.log_softmax(x, 0)),
        (lambda x: F.log_softmax(x, -1), lambda x: TF.log_softmax(x, -1)),
    ],
)
def test_activations_match_torch(ours, theirs):
    x = r(4, 5) * 4
    x[np.abs(np.abs(x) - 3) < 1e-3] += 0.01  # hardsigmoid's kinks: PyTorch's gradient uses an open interval
    # PyTorch's CPU hardsigmoid backward multiplies by the float32 constant 1.0f/6.0f even in float64
    loose = dict(rtol=1e-7, atol=1e-12) if ours is F.hard_sigmoid else TOL
    _both(ours, theirs, x, grad_tol=loose)


def test_activations_extreme_inputs_stay_finite():
    x = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]])
    for ours, theirs in [
        (F.sigmoid, torch.sigmoid),
        (lambda t: F.log_softmax(t, 1), lambda t: TF.log_softmax(t, 1)),
        (lambda t: F.softmax(t, 1), lambda t: TF.softmax(t, 1)),
    ]:
        out = _both(ours, theirs, x)
        assert np.isfinite(out.data).all()


def test_linear_functional_matches_torch():
    x, w, b = r(2, 3, 4), r(5, 4), r(5)
    _both(F.linear, TF.linear, x, w, b, grad_args=(0, 1, 2))
    with pytest.raises(ValueError, match="linear"):
        F.linear(Tensor(r(2, 3)), Tensor(w))


# ------------------------------------------------------------------------------------------------ regression


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_l1_match_torch(reduction):
    x, y = r(3, 4), r(3, 4)
    _both(F.mse_loss, TF.mse_loss, x, y, grad_args=(0, 1), reduction=reduction)
    _both(F.l1_loss, TF.l1_loss, x, y, grad_args=(0, 1), reduction=reduction)


def test_losses_validate_reduction_and_shapes():
    x = Tensor(r(3, 4))
    for fn in (F.mse_loss, F.l1_loss, F.binary_cross_entropy_with_logits):
        with pytest.raises(ValueError, match="reduction"):
            fn(x, r(3, 4), reduction="avg")
        with pytest.raises(ValueError, match=r"\(3, 4\)"):
            fn(x, r(4, 3))
    with pytest.raises(ValueError, match="cross_entropy: reduction"):
        F.cross_entropy(x, np.array([0, 1, 2]), reduction="mean ")
    with pytest.raises(ValueError, match=r"cross_entropy: target shape \(4,\)"):
        F.cross_entropy(x, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="out of bounds"):
        F.cross_entropy(x, np.array([0, 1, 4]))
    with pytest.raises(TypeError, match="integers"):
        F.nll_loss(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="weight must have shape"):
        F.cross_entropy(x, np.array([0, 1, 2]), weight=np.ones(3))
    with pytest.raises(ValueError, match="probabilities"):
        F.binary_cross_entropy(Tensor(np.array([0.5, 1.5])), np.array([0.0, 1.0]))


# ------------------------------------------------------------------------------------------------ binary


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_matches_torch(reduction, weighted):
    p = rng.uniform(0.01, 0.99, (4, 3))
    y = rng.uniform(0, 1, (4, 3))
    w = rng.uniform(0.5, 2, (3,)) if weighted else None
    _both(
        lambda a, b: F.binary_cross_entropy(a, b, weight=w, reduction=reduction),
        lambda a, b: TF.binary_cross_entropy(a, b, weight=None if w is None else torch.tensor(w), reduction=reduction),
        p,
        y,
    )


def test_bce_log_is_clamped_at_minus_100():
    p = np.array([0.0, 1.0, 1e-60, 0.5])
    y = np.array([1.0, 0.0, 1.0, 1.0])
    ours = F.binary_cross_entropy(Tensor(p, requires_grad=True), y, reduction="none")
    ref = TF.binary_cross_entropy(torch.tensor(p), torch.tensor(y), reduction="none")
    np.testing.assert_allclose(ours.data, ref.numpy(), **TOL)
    np.testing.assert_array_equal(ours.data[:3], 100.0)
    t = Tensor(p, requires_grad=True)
    F.binary_cross_entropy(t, y).backward()
    assert np.isfinite(t.grad).all()  # no 0/0 from the clamped branch


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_weight", [False, True])
@pytest.mark.parametrize("with_pos_weight", [False, True])
def test_bce_with_logits_matches_torch(reduction, with_weight, with_pos_weight):
    x = r(5, 3) * 3
    y = rng.uniform(0, 1, (5, 3))
    w = rng.uniform(0.5, 2, (5, 1)) if with_weight else None
    pw = rng.uniform(0.5, 3, (3,)) if with_pos_weight else None

    def theirs(a, b):
        return TF.binary_cross_entropy_with_logits(
            a,
            b,
            weight=None if w is None else torch.tensor(w),
            pos_weight=None if pw is None else torch.tensor(pw),
            reduction=reduction,
        )

    _both(lambda a, b: F.binary_cross_entropy_with_logits(a, b, w, reduction, pw), theirs, x, y, grad_args=(0, 1))


@pytest.mark.parametrize("with_pos_weight", [False, True])
def test_bce_with_logits_extreme_logits(with_pos_weight):
    x = np.array([-1e4, -1e3, -40.0, -1e-9, 0.0, 1e-9, 40.0, 1e3, 1e4])
    y = np.array([1.0, 0.0, 1.0, 0.5, 1.0, 0.0, 0.0, 1.0, 0.3])
    pw = np.full(9, 2.5) if with_pos_weight else None
    out = _both(
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction="none", pos_weight=pw),
        lambda a, b: TF.binary_cross_entropy_with_logits(
            a, b, reduction="none", pos_weight=None if pw is None else torch.tensor(pw)
        ),
        x,
        y,
    )
    assert np.isfinite(out.data).all()
    # log1p accuracy where the loss is tiny: loss(40, y=1) = log1p(e^-40) ~ 4.2e-18, not 0
    t = F.binary_cross_entropy_with_logits(Tensor(np.array([40.0])), np.array([1.0]), reduction="none")
    np.testing.assert_allclose(t.data, np.log1p(np.exp(-40.0)), rtol=1e-14)


# ------------------------------------------------------------------------------------------------ class losses


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5), (2, 4, 3, 2), (4,)])
def test_cross_entropy_index_targets_match_torch(reduction, weighted, smoothing, shape):
    x = r(*shape) * 3
    tshape = () if len(shape) == 1 else (shape[0], *shape[2:])
    t = rng.integers(0, 4, tshape)
    if t.ndim and t.size > 2:
        t.reshape(-1)[1] = -100  # ignored
    w = rng.uniform(0.5, 2, 4) if weighted else None
    _both(
        lambda a, b: F.cross_entropy(a, b, weight=w, reduction=reduction, label_smoothing=smoothing),
        lambda a, b: TF.cross_entropy(
            a, b, weight=None if w is None else torch.tensor(w), reduction=reduction, label_smoothing=smoothing
        ),
        x,
        t,
    )


def test_cross_entropy_custom_ignore_index_and_all_ignored():
    x, t = r(5, 3), np.array([0, 2, 1, 2, 2])
    kw = dict(ignore_index=2, label_smoothing=0.1)
    _both(lambda a, b: F.cross_entropy(a, b, **kw), lambda a, b: TF.cross_entropy(a, b, **kw), x, t)
    # every target ignored: PyTorch's mean is 0/0 = nan
    out = F.cross_entropy(Tensor(x), np.full(5, -100))
    assert np.isnan(out.item()) and np.isnan(TF.cross_entropy(torch.tensor(x), torch.full((5,), -100)).item())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("shape", [(5, 4), (2, 4, 3)])
def test_cross_entropy_probability_targets_match_torch(reduction, weighted, smoothing, shape):
    x = r(*shape)
    p = rng.uniform(0, 1, shape)
    p /= p.sum(axis=1, keepdims=True)
    w = rng.uniform(0.5, 2, 4) if weighted else None
    _both(
        lambda a, b: F.cross_entropy(a, b, weight=w, reduction=reduction, label_smoothing=smoothing),
        lambda a, b: TF.cross_entropy(
            a, b, weight=None if w is None else torch.tensor(w), reduction=reduction, label_smoothing=smoothing
        ),
        x,
        p,
        grad_args=(0, 1),
    )


def test_cross_entropy_extreme_logits_are_finite():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [0.0, 0.0, 0.0]])
    t = np.array([1, 2, 0])
    out = _both(
        lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1),
        lambda a, b: TF.cross_entropy(a, b, label_smoothing=0.1),
        x,
        t,
    )
    assert np.isfinite(out.data).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_matches_torch(reduction, weighted):
    x = np.log(rng.dirichlet(np.ones(4), size=6))
    t = np.array([0, 3, -100, 1, 1, 2])
    w = rng.uniform(0.5, 2, 4) if weighted else None
    _both(
        lambda a, b: F.nll_loss(a, b, weight=w, reduction=reduction),
        lambda a, b: TF.nll_loss(a, b, weight=None if w is None else torch.tensor(w), reduction=reduction),
        x,
        t,
    )


def test_cross_entropy_gradcheck():
    t = np.array([2, 0, 1])
    assert gradcheck(lambda x: F.cross_entropy(x, t, label_smoothing=0.1), [r(3, 4)])
    assert gradcheck(lambda x: F.binary_cross_entropy_with_logits(x, np.array([0.0, 1.0, 0.2])), [r(3)])


# ------------------------------------------------------------------------------------------------ misc


def test_dropout_statistics_and_modes():
    manual_seed(3)
    with default_dtype(np.float64):
        x = Tensor(np.ones((200, 100)), requires_grad=True)
        y = F.dropout(x, 0.3)
        kept = y.data != 0
        assert abs(kept.mean() - 0.7) < 0.01
        np.testing.assert_allclose(y.data[kept], 1 / 0.7)
        y.sum().backward()
        np.testing.assert_allclose(x.grad, kept / 0.7)  # gradient flows through kept elements only
        assert F.dropout(x, 0.3, training=False) is x
        assert (F.dropout(x, 1.0).data == 0).all()
    manual_seed(5)
    a = F.dropout(Tensor(np.ones(50)), 0.5).data
    manual_seed(5)
    np.testing.assert_array_equal(a, F.dropout(Tensor(np.ones(50)), 0.5).data)
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(x, 1.5)


def test_dropout_keeps_float32():
    x = Tensor(np.ones((3, 3), np.float32))
    assert F.dropout(x, 0.5).dtype == np.float32


def test_one_hot_matches_torch():
    idx = np.array([[0, 2], [3, 1]])
    ours = F.one_hot(idx)
    ref = TF.one_hot(torch.tensor(idx))
    assert ours.dtype == np.int64
    np.testing.assert_array_equal(ours.data, ref.numpy())
    np.testing.assert_array_equal(F.one_hot(Tensor(idx), 6).data, TF.one_hot(torch.tensor(idx), 6).numpy())
    with pytest.raises(ValueError, match="one_hot"):
        F.one_hot(idx, 3)
    with pytest.raises(TypeError, match="one_hot"):
        F.one_hot(np.array([0.5]))


def test_penalties():
    a = Tensor(r(3, 2), requires_grad=True)
    b = Tensor(r(4), requires_grad=True)
    l1 = F.l1_penalty([a, b])
    l2 = F.l2_penalty([a, b])
    np.testing.assert_allclose(l1.item(), np.abs(a.data).sum() + np.abs(b.data).sum())
    np.testing.assert_allclose(l2.item(), (a.data**2).sum() + (b.data**2).sum())
    (l1 + l2).backward()
    np.testing.assert_allclose(a.grad, np.sign(a.data) + 2 * a.data)
    with pytest.raises(TypeError, match="l2_penalty"):
        F.l2_penalty([a, 3.0])
