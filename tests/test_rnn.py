"""Recurrent cells and layers: parity with PyTorch (values and every gradient), peepholes and custom activations
by finite differences and a numpy reference, a hand-derived BPTT, scopes, step observers, long unrolls, errors,
and the benchmark's quick mode."""

import gc
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import tinygrad_lstm as tl
import tinygrad_lstm.nn.rnn as rnn_mod
from tinygrad_lstm import Tensor, default_dtype, manual_seed
from tinygrad_lstm.nn import GRU, LSTM, RNN, STEP_OBSERVERS, GRUCell, LSTMCell, Module, RNNCell, StepRecord
from tinygrad_lstm.ops import Op
from tinygrad_lstm.tensor import walk

ROOT = Path(__file__).resolve().parents[1]
TOL = {np.float64: 1e-9, np.float32: 1e-5}


def _torch():
    return pytest.importorskip("torch")


def _tdtype(torch, dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


def _load_from_torch(ours: Module, theirs) -> None:
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def _close(a, b, dtype, what):
    tol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol, err_msg=what)


def _weighted_sum(tensors, weights):
    """sum_k <w_k, t_k>: a scalar whose gradient reaches every output with a different random cotangent."""
    total = None
    for t, w in zip(tensors, weights):
        term = (t * w).sum()
        total = term if total is None else total + term
    return total


# ------------------------------------------------------------------------------------------- cells vs torch


CELL_CASES = [
    ("rnn_tanh", {"nonlinearity": "tanh"}),
    ("rnn_relu", {"nonlinearity": "relu"}),
    ("lstm", {}),
    ("gru", {}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kw", CELL_CASES)
@pytest.mark.parametrize("variant", ["state", "no_state", "unbatched", "no_bias"])
def test_cells_match_torch(name, kw, variant, dtype):
    torch = _torch()
    rng = np.random.default_rng(hash((name, variant)) % 2**32)
    I, H, B = rng.integers(1, 7), rng.integers(1, 7), rng.integers(1, 5)
    bias = variant != "no_bias"
    ours_cls, torch_cls = {
        "rnn_tanh": (RNNCell, torch.nn.RNNCell),
        "rnn_relu": (RNNCell, torch.nn.RNNCell),
        "lstm": (LSTMCell, torch.nn.LSTMCell),
        "gru": (GRUCell, torch.nn.GRUCell),
    }[name]
    theirs = torch_cls(int(I), int(H), bias=bias, **kw).to(_tdtype(torch, dtype))
    ours = ours_cls(int(I), int(H), bias=bias, dtype=dtype, **kw)
    _load_from_torch(ours, theirs)
    lead = () if variant == "unbatched" else (int(B),)
    x_np = rng.standard_normal((*lead, I)).astype(dtype)
    x, tx = Tensor(x_np, requires_grad=True), torch.tensor(x_np, requires_grad=True)
    n_states = 2 if name == "lstm" else 1
    s_np = [rng.standard_normal((*lead, H)).astype(dtype) for _ in range(n_states)]
    s = [Tensor(a, requires_grad=True) for a in s_np]
    ts = [torch.tensor(a, requires_grad=True) for a in s_np]
    give = variant != "no_state"
    if name == "lstm":
        out, tout = ours(x, tuple(s) if give else None), theirs(tx, tuple(ts) if give else None)
    else:
        out, tout = (ours(x, s[0]), theirs(tx, ts[0])) if give else (ours(x), theirs(tx))
    out, tout = (list(out), list(tout)) if name == "lstm" else ([out], [tout])
    for o, to in zip(out, tout):
        assert o.shape == tuple(to.shape)
        _close(o.data, to.detach().numpy(), dtype, "forward")
    w = [rng.standard_normal(o.shape).astype(dtype) for o in out]
    _weighted_sum(out, w).backward()
    _weighted_sum(tout, [torch.tensor(a) for a in w]).backward()
    theirs_p = dict(theirs.named_parameters())
    for k, p in ours.named_parameters():
        _close(p.grad, theirs_p[k].grad.numpy(), dtype, f"grad of {k}")
    _close(x.grad, tx.grad.numpy(), dtype, "grad of x")
    if give:
        for a, b in zip(s, ts):
            _close(a.grad, b.grad.numpy(), dtype, "grad of the initial state")


# ------------------------------------------------------------------------------------------- layers vs torch

LAYER_CONFIGS = {
    "2layers_bidir": {"num_layers": 2, "bidirectional": True},
    "batch_first": {"batch_first": True},
    "3layers_no_bias": {"num_layers": 3, "bias": False},
    "bidir_batch_first_no_bias": {"bidirectional": True, "batch_first": True, "bias": False},
    "unbatched_2layers": {"num_layers": 2, "bidirectional": True, "unbatched": True},
    "relu": {"nonlinearity": "relu", "num_layers": 2},
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("config", list(LAYER_CONFIGS))
@pytest.mark.parametrize("give_state", [False, True])
def test_layers_match_torch(kind, config, give_state, dtype):
    torch = _torch()
    kw = dict(LAYER_CONFIGS[config])
    if "nonlinearity" in kw and kind != "rnn":
        pytest.skip("nonlinearity is an RNN option")
    unbatched = kw.pop("unbatched", False)
    rng = np.random.default_rng(hash((kind, config, give_state)) % 2**32)
    I, H, B, T = (int(v) for v in (rng.integers(1, 6), rng.integers(1, 6), rng.integers(1, 4), rng.integers(1, 6)))
    ours_cls, torch_cls = {"rnn": (RNN, torch.nn.RNN), "lstm": (LSTM, torch.nn.LSTM), "gru": (GRU, torch.nn.GRU)}[kind]
    theirs = torch_cls(I, H, **kw).to(_tdtype(torch, dtype))
    ours = ours_cls(I, H, dtype=dtype, **kw)
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in theirs.named_parameters()]
    _load_from_torch(ours, theirs)

    x_shape = (T, I) if unbatched else (B, T, I) if kw.get("batch_first") else (T, B, I)
    x_np = rng.standard_normal(x_shape).astype(dtype)
    x, tx = Tensor(x_np, requires_grad=True), torch.tensor(x_np, requires_grad=True)
    LD = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    s_shape = (LD, H) if unbatched else (LD, B, H)
    n_states = 2 if kind == "lstm" else 1
    s_np = [rng.standard_normal(s_shape).astype(dtype) for _ in range(n_states)]
    s = [Tensor(a, requires_grad=True) for a in s_np]
    ts = [torch.tensor(a, requires_grad=True) for a in s_np]
    if give_state:
        hx, thx = (tuple(s), tuple(ts)) if kind == "lstm" else (s[0], ts[0])
        out, final = ours(x, hx)
        tout, tfinal = theirs(tx, thx)
    else:
        out, final = ours(x)
        tout, tfinal = theirs(tx)
    finals = list(final) if kind == "lstm" else [final]
    tfinals = list(tfinal) if kind == "lstm" else [tfinal]
    results, tresults = [out, *finals], [tout, *tfinals]
    for o, to in zip(results, tresults):
        assert o.shape == tuple(to.shape)
        _close(o.data, to.detach().numpy(), dtype, "forward")
    w = [rng.standard_normal(o.shape).astype(dtype) for o in results]
    _weighted_sum(results, w).backward()
    _weighted_sum(tresults, [torch.tensor(a) for a in w]).backward()
    theirs_p = dict(theirs.named_parameters())
    for k, p in ours.named_parameters():
        _close(p.grad, theirs_p[k].grad.numpy(), dtype, f"grad of {k}")
    _close(x.grad, tx.grad.numpy(), dtype, "grad of the input")
    if give_state:
        for a, b in zip(s, ts):
            _close(a.grad, b.grad.numpy(), dtype, "grad of the initial state")


def test_state_dict_keys_and_shapes_match_torch():
    torch = _torch()
    for ours, theirs in [
        (LSTM(3, 4, num_layers=2, bidirectional=True), torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)),
        (GRU(3, 4, bias=False), torch.nn.GRU(3, 4, bias=False)),
        (RNN(2, 5, num_layers=3, nonlinearity="relu"), torch.nn.RNN(2, 5, num_layers=3, nonlinearity="relu")),
        (LSTMCell(3, 4), torch.nn.LSTMCell(3, 4)),
        (GRUCell(3, 4, bias=False), torch.nn.GRUCell(3, 4, bias=False)),
    ]:
        mine, ref = ours.state_dict(), theirs.state_dict()
        assert list(mine) == list(ref)
        assert all(mine[k].shape == tuple(ref[k].shape) for k in ref)


def test_dropout_between_layers_only_in_training():
    torch = _torch()
    theirs = torch.nn.LSTM(3, 4, num_layers=2, dropout=1.0).double()
    with default_dtype(np.float64):
        ours = LSTM(3, 4, num_layers=2, dropout=1.0)
    _load_from_torch(ours, theirs)
    x_np = np.random.default_rng(0).standard_normal((5, 2, 3))
    # Eval mode: no dropout, equal to torch's eval mode.
    ours.eval()
    theirs.eval()
    out, _ = ours(Tensor(x_np))
    np.testing.assert_allclose(out.data, theirs(torch.tensor(x_np))[0].detach().numpy(), atol=1e-12)
    # Training with p = 1: layer 1 sees only zeros, so the output is layer 1 run alone on a zero input.
    ours.train()
    out, (h_n, _) = ours(Tensor(x_np))
    second = torch.nn.LSTM(4, 4).double()
    second.load_state_dict({k.replace("_l1", "_l0"): v for k, v in theirs.state_dict().items() if "_l1" in k})
    np.testing.assert_allclose(out.data, second(torch.zeros(5, 2, 4, dtype=torch.float64))[0].detach().numpy())
    # The first layer itself is untouched by dropout: its final state equals torch's.
    np.testing.assert_allclose(h_n.data[0], theirs(torch.tensor(x_np))[1][0][0].detach().numpy(), atol=1e-12)


def test_dropout_mask_scales_kept_units_and_is_seeded():
    with default_dtype(np.float64):
        m = GRU(2, 50, num_layers=2, dropout=0.5)
    m.train()
    x = Tensor(np.random.default_rng(1).standard_normal((3, 4, 2)))
    manual_seed(7)
    a, _ = m(x)
    manual_seed(7)
    b, _ = m(x)
    c, _ = m(x)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    with pytest.warns(UserWarning, match="num_layers=1"):
        RNN(2, 3, dropout=0.3)


# ------------------------------------------------------------------------------------------- peepholes, activations


def _sig(z):
    return 1 / (1 + np.exp(-z))


NP_ACTS = {
    "sigmoid": _sig,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "hard_sigmoid": lambda z: np.clip(z / 6 + 0.5, 0, 1),
}


def _numpy_lstm(params, x, h, c, peephole, gate, cell, sfx=""):
    """Reference LSTM over x (T, B, I), written directly from the equations (Gers & Schmidhuber peepholes)."""
    g_act, c_act = NP_ACTS[gate], NP_ACTS[cell]
    W, U = params["weight_ih" + sfx], params["weight_hh" + sfx]
    b = params["bias_ih" + sfx] + params["bias_hh" + sfx]
    H = U.shape[1]
    hs = []
    for t in range(x.shape[0]):
        z = x[t] @ W.T + h @ U.T + b
        zi, zf, zg, zo = z[:, :H], z[:, H : 2 * H], z[:, 2 * H : 3 * H], z[:, 3 * H :]
        if peephole:
            zi = zi + params["weight_ci" + sfx] * c
            zf = zf + params["weight_cf" + sfx] * c
        c = g_act(zf) * c + g_act(zi) * c_act(zg)
        if peephole:
            zo = zo + params["weight_co" + sfx] * c
        h = g_act(zo) * c_act(c)
        hs.append(h)
    return np.stack(hs), h, c


@pytest.mark.parametrize(
    "peephole,gate,cell",
    [
        (True, "sigmoid", "tanh"),
        (True, "hard_sigmoid", "relu"),
        (False, "hard_sigmoid", "tanh"),
        (False, "sigmoid", "leaky_relu"),
        (False, "tanh", "relu"),
        (True, "leaky_relu", "hard_sigmoid"),
    ],
)
def test_peephole_and_activation_lstm_match_numpy_reference(peephole, gate, cell):
    rng = np.random.default_rng(3)
    T, B, I, H = 4, 2, 3, 5
    with default_dtype(np.float64):
        layer = LSTM(I, H, peephole=peephole, gate_activation=gate, cell_activation=cell)
        cellmod = LSTMCell(I, H, peephole=peephole, gate_activation=gate, cell_activation=cell)
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    params = layer.state_dict()
    ref, ref_h, ref_c = _numpy_lstm(params, x, h0, c0, peephole, gate, cell, "_l0")
    out, (h_n, c_n) = layer(Tensor(x), (Tensor(h0[None]), Tensor(c0[None])))
    np.testing.assert_allclose(out.data, ref, atol=1e-12)
    np.testing.assert_allclose(h_n.data[0], ref_h, atol=1e-12)
    np.testing.assert_allclose(c_n.data[0], ref_c, atol=1e-12)
    # The cell, with the same weights, gives the same steps.
    cellmod.load_state_dict({k.replace("_l0", ""): v for k, v in params.items()})
    hc = (Tensor(h0), Tensor(c0))
    for t in range(T):
        hc = cellmod(Tensor(x[t]), hc)
        np.testing.assert_allclose(hc[0].data, ref[t], atol=1e-12)


def _fd_check(module: Module, loss_fn, extra: list[Tensor], eps: float = 1e-6, tol: float = 1e-6) -> None:
    """Central differences for every parameter of ``module`` and every tensor in ``extra`` (all float64)."""
    module.zero_grad()
    for t in extra:
        t.grad = None
    loss_fn().backward()
    targets = [(k, p) for k, p in module.named_parameters()] + [(f"extra{i}", t) for i, t in enumerate(extra)]
    for name, p in targets:
        num = np.zeros_like(p.data)
        flat, nflat = p.data.reshape(-1), num.reshape(-1)
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + eps
            up = loss_fn().item()
            flat[j] = old - eps
            down = loss_fn().item()
            flat[j] = old
            nflat[j] = (up - down) / (2 * eps)
        np.testing.assert_allclose(p.grad, num, rtol=tol, atol=tol, err_msg=f"gradient of {name}")


def _softsign(x: Tensor) -> Tensor:
    return x / (1.0 + x.abs())


@pytest.mark.parametrize(
    "kw",
    [
        {"peephole": True},
        {"peephole": True, "gate_activation": "hard_sigmoid", "cell_activation": "leaky_relu"},
        {"gate_activation": _softsign, "cell_activation": "relu"},
        {"peephole": True, "gate_activation": "tanh", "cell_activation": _softsign, "bidirectional": True},
        {"peephole": True, "num_layers": 2, "batch_first": True},
    ],
)
def test_peephole_and_custom_activation_gradients_by_finite_differences(kw):
    rng = np.random.default_rng(5)
    T, B, I, H = 3, 2, 2, 3
    with default_dtype(np.float64):
        layer = LSTM(I, H, **kw)
    shape = (B, T, I) if kw.get("batch_first") else (T, B, I)
    x = Tensor(rng.standard_normal(shape), requires_grad=True)
    LD = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    h0 = Tensor(rng.standard_normal((LD, B, H)), requires_grad=True)
    c0 = Tensor(rng.standard_normal((LD, B, H)), requires_grad=True)
    w = [rng.standard_normal(s) for s in ((*shape[:2], H * LD // kw.get("num_layers", 1)), (LD, B, H), (LD, B, H))]

    def loss():
        out, (h, c) = layer(x, (h0, c0))
        return _weighted_sum([out, h, c], w)

    _fd_check(layer, loss, [x, h0, c0])


@pytest.mark.parametrize("kw", [{"peephole": True}, {"gate_activation": "hard_sigmoid", "cell_activation": _softsign}])
def test_lstm_cell_peephole_and_custom_activation_gradients(kw):
    rng = np.random.default_rng(6)
    with default_dtype(np.float64):
        cell = LSTMCell(3, 4, **kw)
    xs = [Tensor(rng.standard_normal((2, 3)), requires_grad=True) for _ in range(3)]
    w = rng.standard_normal((2, 4))

    def loss():
        hc = None
        for x in xs:
            hc = cell(x, hc)
        return (hc[0] * w).sum() + (hc[1] * hc[1]).sum()

    _fd_check(cell, loss, xs)


def test_peephole_parameter_names_and_init_range():
    m = LSTM(3, 16, num_layers=2, bidirectional=True, peephole=True)
    names = [k for k, _ in m.named_parameters()]
    for sfx in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ci", "weight_cf", "weight_co"):
            assert p + sfx in names
    assert m.weight_ci_l1_reverse.shape == (16,)
    assert m.weight_ih_l1.shape == (64, 32)
    k = 1 / np.sqrt(16)
    for name, p in m.named_parameters():
        assert np.abs(p.data).max() <= k, name
    everything = np.concatenate([p.data.ravel() for p in m.parameters()])
    assert abs(everything.std() - k / np.sqrt(3)) < 0.05 * k  # the std of U(-k, k)
    assert everything.dtype == np.float32


def test_activation_and_argument_errors():
    with pytest.raises(ValueError, match=r"'sigmoid'.*'hard_sigmoid'"):
        LSTMCell(2, 3, gate_activation="swish")
    with pytest.raises(ValueError, match="cell_activation 'gelu'"):
        LSTM(2, 3, cell_activation="gelu")
    with pytest.raises(TypeError, match="gate_activation"):
        LSTM(2, 3, gate_activation=3)
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        GRU(2, 0)
    with pytest.raises(ValueError, match="dropout"):
        LSTM(2, 3, num_layers=2, dropout=1.5)
    m = LSTM(2, 3, num_layers=2)
    with pytest.raises(ValueError, match="input_size=2"):
        m(Tensor(np.zeros((4, 1, 5), np.float32)))
    with pytest.raises(ValueError, match=r"2-D .*3-D"):
        m(Tensor(np.zeros((2, 4, 1, 2), np.float32)))
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 1, 3\)"):
        m(Tensor(np.zeros((4, 1, 2), np.float32)), (Tensor(np.zeros((1, 1, 3), np.float32)),) * 2)
    with pytest.raises(TypeError, match="pair"):
        m(Tensor(np.zeros((4, 1, 2), np.float32)), Tensor(np.zeros((2, 1, 3), np.float32)))
    with pytest.raises(TypeError, match="float64 but the parameters are float32"):
        m(Tensor(np.zeros((4, 1, 2))))
    with pytest.raises(ValueError, match="empty"):
        m(Tensor(np.zeros((0, 1, 2), np.float32)))
    with pytest.raises(ValueError, match=r"h must have shape \(2, 3\)"):
        GRUCell(2, 3)(Tensor(np.zeros((2, 2), np.float32)), Tensor(np.zeros((3,), np.float32)))
    with pytest.raises(TypeError, match="RNNCell: input must be a Tensor, ndarray or torch tensor, got str"):
        RNNCell(2, 3)("ab")


# ------------------------------------------------------------------------------------------- hand-derived BPTT


def test_elman_rnn_gradients_equal_a_hand_derived_bptt():
    """h_t = tanh(W x_t + b_ih + U h_{t-1} + b_hh), loss = sum_t <v_t, h_t>, 3 steps, backward written by hand."""
    rng = np.random.default_rng(11)
    B, I, H, T = 2, 3, 4, 3
    with default_dtype(np.float64):
        cell = RNNCell(I, H)
    W, U, b1, b2 = (cell.weight_ih.data, cell.weight_hh.data, cell.bias_ih.data, cell.bias_hh.data)
    xs = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H))
    vs = rng.standard_normal((T, B, H))

    # Engine.
    h = Tensor(h0, requires_grad=True)
    hinit, loss = h, None
    for t in range(T):
        h = cell(Tensor(xs[t]), h)
        term = (h * vs[t]).sum()
        loss = term if loss is None else loss + term
    loss.backward()

    # By hand: forward keeping every h, then dL/dh_t = v_t + U^T-propagated gradient from step t+1.
    hs = [h0]
    for t in range(T):
        hs.append(np.tanh(xs[t] @ W.T + b1 + hs[-1] @ U.T + b2))
    dW, dU, db = np.zeros_like(W), np.zeros_like(U), np.zeros_like(b1)
    dh_next = np.zeros((B, H))
    for t in reversed(range(T)):
        dh = vs[t] + dh_next
        dz = dh * (1 - hs[t + 1] ** 2)  # tanh'
        dW += dz.T @ xs[t]
        dU += dz.T @ hs[t]  # h_{t-1} is hs[t]
        db += dz.sum(axis=0)
        dh_next = dz @ U
    np.testing.assert_allclose(cell.weight_ih.grad, dW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cell.weight_hh.grad, dU, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cell.bias_ih.grad, db, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cell.bias_hh.grad, db, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hinit.grad, dh_next, rtol=1e-12, atol=1e-12)


def test_ten_thousand_step_unroll_backprops_without_recursion_error():
    cell = RNNCell(1, 2)
    x = Tensor(np.ones((1, 1), np.float32))
    h = None
    for _ in range(10_000):
        h = cell(x, h)
    h.sum().backward()
    assert np.isfinite(cell.weight_hh.grad).all() and np.abs(cell.weight_hh.grad).sum() > 0


# ------------------------------------------------------------------------------------------- scopes


class _Net(Module):
    def __init__(self, **kw):
        self.lstm = LSTM(2, 3, **kw)

    def forward(self, x):
        return self.lstm(x)


def _scopes_of(*roots):
    return {v.scope for v in walk(*roots) if isinstance(v, Op)}


def test_single_layer_lstm_nodes_are_scoped_by_step_and_cell():
    net = _Net()  # the layer is called as an attribute, so its scope is its name, "lstm"
    out, (h, c) = net.lstm(Tensor(np.ones((3, 1, 2), np.float32)))
    scopes = _scopes_of(out, h, c)
    for k in range(3):
        assert ("lstm", f"t={k}", "cell") in scopes
    assert ("lstm", "t=3", "cell") not in scopes
    assert all(s[0] == "lstm" for s in scopes)
    # h_n stacks (in the layer's scope) the state that the last step's cell math produced.
    assert h._ctx.scope == ("lstm",)
    assert h._ctx.parents[0].scope == ("lstm", "t=2", "cell")


def test_stacked_and_bidirectional_scopes():
    net = _Net(num_layers=2, bidirectional=True)
    out, (h, c) = net.lstm(Tensor(np.ones((2, 1, 2), np.float32)))
    scopes = _scopes_of(out, h, c)
    for layer in ("l0", "l0_reverse", "l1", "l1_reverse"):
        for k in range(2):
            assert ("lstm", layer, f"t={k}", "cell") in scopes
    cell = LSTMCell(2, 3)
    h2, _ = cell(Tensor(np.ones((1, 2), np.float32)))
    assert _scopes_of(h2) == {("LSTMCell",)}


# ------------------------------------------------------------------------------------------- step observers


def test_step_observers_receive_every_step_of_a_stacked_bidirectional_lstm():
    records: list[StepRecord] = []
    layer = LSTM(3, 4, num_layers=2, bidirectional=True)
    STEP_OBSERVERS.append(records.append)
    try:
        out, (h_n, _) = layer(Tensor(np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)))
    finally:
        STEP_OBSERVERS.remove(records.append)
    assert len(records) == 2 * 2 * 5
    seen = [(r.layer, r.direction, r.t) for r in records]
    assert seen[:5] == [(0, 0, t) for t in range(5)]
    assert seen[5:10] == [(0, 1, t) for t in reversed(range(5))]  # reverse: true time indices, last first
    assert sorted(seen) == sorted((ly, d, t) for ly in range(2) for d in range(2) for t in range(5))
    for r in records:
        assert r.module is layer and r.kind == "lstm"
        assert set(r.gates) == {"i", "f", "g", "o"}
        assert all(g.shape == (2, 4) for g in r.gates.values())
        assert r.h.shape == (2, 4) and r.c.shape == (2, 4)
        # The recorded h is the layer's output at that time (last layer) and post-activation gates are in range.
        if r.layer == 1:
            np.testing.assert_array_equal(r.h.data, out.data[r.t, :, 4 * r.direction : 4 * r.direction + 4])
        assert 0 <= r.gates["f"].data.min() and r.gates["f"].data.max() <= 1
        np.testing.assert_allclose(r.h.data, r.gates["o"].data * np.tanh(r.c.data), atol=1e-6)
    last = [r for r in records if r.layer == 1 and r.direction == 1][-1]
    np.testing.assert_array_equal(last.h.data, h_n.data[3])


def test_step_observers_for_cells_gru_rnn_and_unbatched():
    records: list[StepRecord] = []
    STEP_OBSERVERS.append(records.append)
    try:
        GRUCell(2, 3)(Tensor(np.ones((4, 2), np.float32)))
        RNNCell(2, 3)(Tensor(np.ones((2,), np.float32)))
        LSTMCell(2, 3)(Tensor(np.ones((1, 2), np.float32)))
        GRU(2, 3)(Tensor(np.ones((6, 2), np.float32)))
    finally:
        STEP_OBSERVERS.remove(records.append)
    gru_cell, rnn_cell, lstm_cell, *gru_layer = records
    assert (gru_cell.kind, gru_cell.t, gru_cell.layer, gru_cell.direction) == ("gru", None, 0, 0)
    assert set(gru_cell.gates) == {"r", "z", "n"} and gru_cell.gates["n"].shape == (4, 3)
    assert rnn_cell.kind == "rnn" and rnn_cell.gates == {} and rnn_cell.h.shape == (3,) and rnn_cell.c is None
    assert lstm_cell.kind == "lstm" and lstm_cell.c.shape == (1, 3)
    assert [r.t for r in gru_layer] == list(range(6))
    assert all(r.h.shape == (3,) and r.gates["z"].shape == (3,) for r in gru_layer)


def test_empty_step_observers_cost_nothing(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("a StepRecord was built with no observer")

    monkeypatch.setattr(rnn_mod, "_notify", boom)
    monkeypatch.setattr(rnn_mod, "StepRecord", boom)
    assert not STEP_OBSERVERS
    LSTM(2, 3, num_layers=2)(Tensor(np.ones((3, 1, 2), np.float32)))
    LSTMCell(2, 3)(Tensor(np.ones((1, 2), np.float32)))
    GRU(2, 3, bidirectional=True)(Tensor(np.ones((3, 1, 2), np.float32)))
    RNNCell(2, 3)(Tensor(np.ones((1, 2), np.float32)))


def test_return_states_gives_every_step_in_time_order():
    layer = LSTM(2, 3, num_layers=2, bidirectional=True, batch_first=True)
    x = Tensor(np.random.default_rng(2).standard_normal((4, 5, 2)).astype(np.float32))
    out, (_, c_n), states = layer(x, return_states=True)
    assert len(states) == 2 and all(len(s) == 2 for s in states) and len(states[1][1]) == 5
    for d in range(2):
        for t in range(5):
            h = states[1][d][t][0]
            np.testing.assert_array_equal(h.data, out.data[:, t, 3 * d : 3 * d + 3])
    np.testing.assert_array_equal(states[0][1][0][1].data, c_n.data[1])  # the reverse direction ends at t = 0
    gru = GRU(2, 3)
    _, _, gstates = gru(Tensor(np.ones((3, 2), np.float32)), return_states=True)
    assert isinstance(gstates[0][0][2], Tensor) and gstates[0][0][2].shape == (3,)
    # The returned states are in the graph: gradients can be retained on them.
    h1 = states[0][0][1][0]
    h1.retain_grad()
    out.sum().backward()
    assert h1.grad is not None and h1.grad.shape == (4, 3)


# ------------------------------------------------------------------------------------------- benchmark


def test_benchmark_quick_mode_runs():
    res = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_lstm.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("| ")]
    assert "ours LSTMCell loop (ms)" in lines[0] and "numpy BPTT (ms)" in lines[0] and "numpy op by op (ms)" in lines[0]
    assert len(lines) == 3  # header + two quick sizes
    for ln in lines[1:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert all(float(c.rstrip("x")) > 0 for c in cells[2:])


@pytest.mark.parametrize("kind", ["layer", "cell"])
def test_an_unrolled_lstm_graph_keeps_what_hand_written_bptt_keeps(kind):
    """Per step, backward needs i, f, g, o, c_{t-1}, tanh(c_t) and h_t: seven (B, H) arrays. The graph keeps those
    and nothing else (nodes hold no tensors, so pre-activations, slices and partial sums are freed as the step
    runs); with the (T, B, H) output the caller holds, about 8.5 arrays a step are allocated after the forward
    (a graph that held every op's inputs kept about 20)."""
    T, B, I, H = 20, 32, 3, 64
    with default_dtype(np.float64):
        lstm, cell = LSTM(I, H), LSTMCell(I, H)
    x = Tensor(np.random.default_rng(0).standard_normal((T, B, I)))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        if kind == "layer":
            out, _ = lstm(x)
        else:
            state, outs = None, []
            for t in range(T):
                state = cell(x[t], state)
                outs.append(state[0])
            out = tl.stack(outs)
            del state, outs
        loss = out.sum()
        held = (tracemalloc.get_traced_memory()[0] - before) / (T * B * H * 8)
    finally:
        tracemalloc.stop()
    assert 7 <= held <= 10.5, f"{held:.2f} (B, H) arrays a step"
    loss.backward()
    assert np.isfinite(lstm.weight_hh_l0.grad if kind == "layer" else cell.weight_hh.grad).all()
