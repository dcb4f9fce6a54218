"""Non-recurrent layers and initializers against PyTorch (float64, 1e-10) and against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinygrad_lstm.nn as nn
from tinygrad_lstm import Tensor, default_dtype, manual_seed
from tinygrad_lstm.nn import init

torch = pytest.importorskip("torch")

TOL = dict(rtol=1e-10, atol=1e-10)
rng = np.random.default_rng(1)


def _sd(module):
    """A torch module's state_dict as numpy arrays (the documented conversion)."""
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _check_grads(ours, theirs):
    for name, p in ours.named_parameters():
        tp = dict(theirs.named_parameters())[name]
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), **TOL, err_msg=name)


# ------------------------------------------------------------------------------------------------ Linear


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (4,)])
def test_linear_matches_torch(bias, shape):
    tl = torch.nn.Linear(4, 3, bias=bias).double()
    with default_dtype(np.float64):
        ours = nn.Linear(4, 3, bias=bias)
    ours.load_state_dict(_sd(tl))
    assert set(ours.state_dict()) == set(tl.state_dict())
    x = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    xo = Tensor(x, requires_grad=True)
    ref, out = tl(xt), ours(xo)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), **TOL)
    v = rng.standard_normal(ref.shape)
    (ref * torch.tensor(v)).sum().backward()
    (out * v).sum().backward()
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), **TOL)
    _check_grads(ours, tl)


def test_linear_default_init_bounds_and_dtype():
    manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    assert lin.weight.shape == (300, 400) and lin.bias.shape == (300,)
    assert lin.weight.dtype == np.float32
    for p in (lin.weight, lin.bias):
        assert np.abs(p.data).max() <= bound
        assert np.abs(p.data).max() > 0.95 * bound  # uniform over the whole range, not a narrower one
    # variance of U(-b, b) is b^2/3
    assert abs(lin.weight.data.var() - bound**2 / 3) < 0.03 * bound**2 / 3
    with pytest.raises(ValueError, match=r"Linear: input shape \(2, 5\)"):
        lin(Tensor(np.ones((2, 5), np.float32)))


def test_linear_init_is_reproducible_with_manual_seed():
    manual_seed(7)
    a = nn.Linear(3, 2).state_dict()
    manual_seed(7)
    b = nn.Linear(3, 2).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


# ------------------------------------------------------------------------------------------------ BatchNorm1d


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5)])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_train_and_eval_match_torch(shape, momentum, affine):
    tb = torch.nn.BatchNorm1d(3, momentum=momentum, affine=affine).double()
    with default_dtype(np.float64):
        ob = nn.BatchNorm1d(3, momentum=momentum, affine=affine)
    if affine:
        with torch.no_grad():
            tb.weight.copy_(torch.tensor(rng.uniform(0.5, 2, 3)))
            tb.bias.copy_(torch.tensor(rng.standard_normal(3)))
    ob.load_state_dict(_sd(tb))
    assert set(ob.state_dict()) == set(tb.state_dict())
    for _ in range(4):  # a few training steps: outputs, gradients and running statistics
        x = rng.standard_normal(shape) * 3 + 1
        xt = torch.tensor(x, requires_grad=True)
        xo = Tensor(x, requires_grad=True)
        ref, out = tb(xt), ob(xo)
        np.testing.assert_allclose(out.data, ref.detach().numpy(), **TOL)
        v = rng.standard_normal(shape)
        (ref * torch.tensor(v)).sum().backward()
        (out * v).sum().backward()
        np.testing.assert_allclose(xo.grad, xt.grad.numpy(), **TOL)
        if affine:
            _check_grads(ob, tb)
            tb.zero_grad()
            ob.zero_grad()
    for k, v in _sd(tb).items():
        np.testing.assert_allclose(ob.state_dict()[k], v, **TOL, err_msg=k)
    assert int(ob.num_batches_tracked) == 4
    tb.eval()
    ob.eval()
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(ob(Tensor(x)).data, tb(torch.tensor(x)).detach().numpy(), **TOL)
    before = ob.running_mean.copy()
    ob(Tensor(x))
    np.testing.assert_array_equal(ob.running_mean, before)  # eval never updates the statistics


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval():
    tb = torch.nn.BatchNorm1d(2, track_running_stats=False).double().eval()
    with default_dtype(np.float64):
        ob = nn.BatchNorm1d(2, track_running_stats=False).eval()
    assert set(ob.state_dict()) == set(tb.state_dict()) == {"weight", "bias"}
    x = rng.standard_normal((6, 2))
    np.testing.assert_allclose(ob(Tensor(x)).data, tb(torch.tensor(x)).detach().numpy(), **TOL)


def test_batchnorm_errors():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected input of shape \(N, 3\)"):
        bn(Tensor(np.ones((4, 2))))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(Tensor(np.ones((1, 3))))


def test_batchnorm_float32_buffers_stay_float32():
    bn = nn.BatchNorm1d(3)
    bn(Tensor(rng.standard_normal((5, 3)).astype(np.float32)))
    assert bn.running_mean.dtype == np.float32 and bn.running_var.dtype == np.float32
    assert bn.num_batches_tracked.dtype == np.int64


# ------------------------------------------------------------------------------------------------ Embedding


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch(padding_idx):
    te = torch.nn.Embedding(6, 3, padding_idx=padding_idx).double()
    with default_dtype(np.float64):
        oe = nn.Embedding(6, 3, padding_idx=padding_idx)
    if padding_idx is not None:
        np.testing.assert_array_equal(oe.weight.data[padding_idx], 0)
    with torch.no_grad():
        te.weight.copy_(torch.tensor(rng.standard_normal((6, 3))))  # padding row non-zero too
    oe.load_state_dict(_sd(te))
    idx = np.array([[1, 2, 2], [5, 0, 1]])  # repeated indices: gradients add up
    ref, out = te(torch.tensor(idx)), oe(idx)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), **TOL)
    v = rng.standard_normal(ref.shape)
    (ref * torch.tensor(v)).sum().backward()
    (out * v).sum().backward()
    np.testing.assert_allclose(oe.weight.grad, te.weight.grad.numpy(), **TOL)
    with pytest.raises(IndexError, match="Embedding"):
        oe(np.array([6]))
    with pytest.raises(TypeError, match="Embedding"):
        oe(np.array([1.0]))


def test_embedding_init_is_standard_normal():
    manual_seed(0)
    w = nn.Embedding(500, 40).weight.data
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02


# ------------------------------------------------------------------------------------------------ containers etc.


def _torch_mlp():
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2)
    ).double()


def _our_mlp():
    with default_dtype(np.float64):
        return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 2))


def test_sequential_state_dict_keys_and_forward_match_torch():
    tm, om = _torch_mlp(), _our_mlp()
    assert sorted(om.state_dict()) == sorted(tm.state_dict())
    om.load_state_dict(_sd(tm))
    x = rng.standard_normal((5, 4))
    np.testing.assert_allclose(om(Tensor(x)).data, tm(torch.tensor(x)).detach().numpy(), **TOL)
    tm.eval()
    om.eval()
    np.testing.assert_allclose(om(Tensor(x)).data, tm(torch.tensor(x)).detach().numpy(), **TOL)
    assert len(om) == 4 and isinstance(om[1], nn.ReLU) and len(om[1:]) == 3
    assert not om[2].training
    names = [n for n, _ in om.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias"]


def test_state_dict_round_trip_and_load_errors_leave_model_unchanged():
    om = _our_mlp()
    sd = om.state_dict()
    other = _our_mlp()
    other.load_state_dict(sd)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    before = om.state_dict()
    bad_shape = {**sd, "0.weight": np.zeros((8, 5))}
    missing = {k: v for k, v in sd.items() if k != "3.bias"}
    unexpected = {**sd, "4.weight": np.zeros(3)}
    for bad, msg in [(bad_shape, "0.weight: shape"), (missing, "missing"), (unexpected, "unexpected")]:
        with pytest.raises(ValueError, match=msg):
            om.load_state_dict({k: (v + 1 if k != "2.num_batches_tracked" else v) for k, v in bad.items()})
        for k, v in om.state_dict().items():
            np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_flatten_and_activation_modules_match_torch():
    x = rng.standard_normal((2, 3, 4, 5))
    xt = torch.tensor(x)
    for ours, theirs in [
        (nn.Flatten(), torch.nn.Flatten()),
        (nn.Flatten(0, 2), torch.nn.Flatten(0, 2)),
        (nn.Flatten(2), torch.nn.Flatten(2)),
        (nn.Sigmoid(), torch.nn.Sigmoid()),
        (nn.Tanh(), torch.nn.Tanh()),
        (nn.ReLU(), torch.nn.ReLU()),
        (nn.LeakyReLU(0.3), torch.nn.LeakyReLU(0.3)),
        (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
        (nn.LogSoftmax(dim=-1), torch.nn.LogSoftmax(dim=-1)),
        (nn.Identity(), torch.nn.Identity()),
    ]:
        out, ref = ours(Tensor(x)), theirs(xt)
        assert out.shape == tuple(ref.shape), ours
        np.testing.assert_allclose(out.data, ref.numpy(), **TOL, err_msg=repr(ours))
    with pytest.raises(ValueError, match="Flatten"):
        nn.Flatten(3, 1)(Tensor(x))


def test_dropout_module_train_and_eval():
    d = nn.Dropout(0.5)
    x = Tensor(np.ones((50, 50)))
    manual_seed(0)
    y = d(x)
    assert 0.4 < (y.data == 0).mean() < 0.6
    assert d.eval()(x) is x
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(-0.1)


def test_layers_record_scopes():
    om = _our_mlp()
    out = om(Tensor(rng.standard_normal((3, 4)), requires_grad=True))
    assert out.grad_fn.scope[-1] == "3"


# ------------------------------------------------------------------------------------------------ init


def test_calculate_gain_matches_torch():
    for nl, param in [
        ("linear", None),
        ("sigmoid", None),
        ("tanh", None),
        ("relu", None),
        ("leaky_relu", None),
        ("leaky_relu", 0.2),
        ("selu", None),
        ("conv2d", None),
    ]:
        assert init.calculate_gain(nl, param) == pytest.approx(torch.nn.init.calculate_gain(nl, param), rel=1e-12)
    with pytest.raises(ValueError, match="calculate_gain"):
        init.calculate_gain("swish")


@pytest.mark.parametrize("shape", [(30, 20), (16, 8, 3, 3)])
def test_fans_match_torch(shape):
    t = Tensor(np.zeros(shape))
    assert init._calculate_fan_in_and_fan_out(t) == torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(Tensor(np.zeros(5)))


@pytest.mark.parametrize("shape", [(300, 200), (64, 32, 3, 3)])
def test_uniform_initializers_exact_bounds(shape):
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    manual_seed(0)
    cases = [
        (lambda t: init.xavier_uniform_(t, gain=2.0), 2.0 * math.sqrt(6 / (fan_in + fan_out))),
        (lambda t: init.kaiming_uniform_(t, a=math.sqrt(5)), math.sqrt(6 / ((1 + 5) * fan_in))),
        (lambda t: init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"), math.sqrt(6 / fan_out)),
        (lambda t: init.uniform_(t, -0.3, 0.3), 0.3),
    ]
    for fn, bound in cases:
        t = Tensor(np.zeros(shape, np.float32))
        arr = t.data
        assert fn(t) is t and t.data is arr and t.dtype == np.float32  # in place, same array and dtype
        assert np.abs(t.data).max() <= bound * (1 + 1e-6)
        assert np.abs(t.data).max() > 0.98 * bound
        assert abs(t.data.std() - bound / math.sqrt(3)) < 0.02 * bound


@pytest.mark.parametrize("shape", [(300, 200), (64, 32, 3, 3)])
def test_normal_initializers_statistics(shape):
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    manual_seed(1)
    cases = [
        (lambda t: init.xavier_normal_(t), math.sqrt(2 / (fan_in + fan_out)), 0.0),
        (lambda t: init.kaiming_normal_(t, nonlinearity="relu"), math.sqrt(2 / fan_in), 0.0),
        (lambda t: init.kaiming_normal_(t, a=0.2, mode="fan_out"), math.sqrt(2 / (1.04 * fan_out)), 0.0),
        (lambda t: init.normal_(t, 0.5, 0.1), 0.1, 0.5),
    ]
    for fn, std, mean in cases:
        t = fn(Tensor(np.zeros(shape)))
        assert abs(t.data.std() - std) < 0.02 * std
        assert abs(t.data.mean() - mean) < 0.02 * std + 1e-12


@pytest.mark.parametrize("shape", [(6, 6), (4, 10), (10, 4), (5, 2, 3)])
def test_orthogonal(shape):
    manual_seed(2)
    t = init.orthogonal_(Tensor(np.zeros(shape)), gain=1.5)
    flat = t.data.reshape(shape[0], -1)
    rows, cols = flat.shape
    gram = flat @ flat.T if rows <= cols else flat.T @ flat
    np.testing.assert_allclose(gram, 1.5**2 * np.eye(min(rows, cols)), atol=1e-12)


def test_constant_initializers_and_reproducibility():
    t = Tensor(np.ones((2, 3), np.float32))
    assert (init.zeros_(t).data == 0).all()
    assert (init.ones_(t).data == 1).all()
    assert (init.constant_(t, 0.25).data == 0.25).all() and t.dtype == np.float32
    manual_seed(11)
    a = init.orthogonal_(Tensor(np.zeros((3, 3)))).data.copy()
    manual_seed(11)
    np.testing.assert_array_equal(a, init.orthogonal_(Tensor(np.zeros((3, 3)))).data)
