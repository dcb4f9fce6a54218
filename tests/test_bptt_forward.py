"""RTRL, SnAp-1 and UORO (bptt/forward.py) against BPTT's exact gradient."""

from __future__ import annotations

import numpy as np
import pytest

import tinygrad_lstm as tl
from tinygrad_lstm import Tensor, bptt, nn
from tinygrad_lstm.bptt.forward import _bptt
from tinygrad_lstm.nn import functional as F

CELLS = ["RNNCell", "LSTMCell", "GRUCell"]


def _setup(kind: str, readout: bool, seed: int = 0, T: int = 6, B: int = 2, H: int = 4):
    tl.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cell = getattr(nn, kind)(3, H, dtype=np.float64)
    xs = rng.standard_normal((T, B, 3))
    if readout:
        head = nn.Linear(H, 2, dtype=np.float64)
        ys = [rng.standard_normal((B, 2)) if t % 2 else None for t in range(T)]  # every other step scored

        def loss_fn(h, y):
            return F.mse_loss(head(h), y)

        params = cell.parameters() + head.parameters()
    else:
        ys = rng.standard_normal((T, B, H))

        def loss_fn(h, y):
            return ((h - y) * (h - y)).sum()

        params = cell.parameters()
    return cell, xs, ys, loss_fn, params


def _grads(method, cell, xs, ys, loss_fn, params, **kw):
    for p in params:
        p.grad = None
    loss = method(cell, xs, ys, loss_fn, **kw)
    return loss, np.concatenate([np.zeros(p.data.size) if p.grad is None else p.grad.reshape(-1) for p in params])


@pytest.mark.parametrize("readout", [False, True], ids=["no readout", "readout"])
@pytest.mark.parametrize("kind", CELLS)
def test_rtrl_equals_bptt(kind, readout):
    cell, xs, ys, loss_fn, params = _setup(kind, readout)
    loss0, g0 = _grads(_bptt, cell, xs, ys, loss_fn, params)
    loss1, g1 = _grads(bptt.rtrl, cell, xs, ys, loss_fn, params)
    assert loss1 == pytest.approx(loss0, rel=1e-12)
    assert np.abs(g0).max() > 1e-3  # a real gradient
    np.testing.assert_allclose(g1, g0, rtol=1e-9, atol=1e-9)


def test_bptt_reference_equals_the_engine_backward_of_the_whole_loss():
    """The reference itself: one unrolled graph and one backward."""
    cell, xs, ys, loss_fn, params = _setup("LSTMCell", readout=True)
    _, g0 = _grads(_bptt, cell, xs, ys, loss_fn, params)
    for p in params:
        p.grad = None
    s, total = None, None
    for t in range(xs.shape[0]):
        s = cell(Tensor(xs[t]), s)
        if ys[t] is not None:
            term = loss_fn(s[0], Tensor(ys[t]))
            total = term if total is None else total + term
    total.backward()
    np.testing.assert_allclose(np.concatenate([p.grad.reshape(-1) for p in params]), g0, rtol=1e-12)


def test_rtrl_accumulates_into_grad_and_takes_an_initial_state_and_unbatched_inputs():
    cell, xs, ys, loss_fn, params = _setup("GRUCell", readout=False, B=1)
    h0 = np.random.default_rng(5).standard_normal((1, 4))
    _, g0 = _grads(_bptt, cell, xs, ys, loss_fn, params, state=h0)
    _, g1 = _grads(bptt.rtrl, cell, xs[:, 0], ys, loss_fn, params, state=h0[0])  # (T, I) and (H,)
    np.testing.assert_allclose(g1, g0, rtol=1e-9, atol=1e-12)
    bptt.rtrl(cell, xs, ys, loss_fn, state=h0)  # a second call adds the same gradient again
    np.testing.assert_allclose(np.concatenate([p.grad.reshape(-1) for p in params]), 2 * g0, rtol=1e-9)


def test_rtrl_with_a_custom_cell_of_tensor_ops():
    class Diag(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.array([0.5, -0.9, 0.3]))
            self.u = nn.Parameter(np.random.default_rng(0).standard_normal((3, 2)))

        def forward(self, x, h):
            h = Tensor.zeros(x.shape[0], 3, dtype=np.float64) if h is None else h
            return (h * self.w + x @ self.u.T).tanh()

    cell = Diag()
    rng = np.random.default_rng(1)
    xs, ys = rng.standard_normal((5, 2, 2)), rng.standard_normal((5, 2, 3))

    def loss_fn(h, y):
        return ((h - y) ** 2).mean()

    _, g0 = _grads(_bptt, cell, xs, ys, loss_fn, cell.parameters())
    _, g1 = _grads(bptt.rtrl, cell, xs, ys, loss_fn, cell.parameters())
    _, g2 = _grads(bptt.snap, cell, xs, ys, loss_fn, cell.parameters())
    np.testing.assert_allclose(g1, g0, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g2, g0, rtol=1e-9, atol=1e-12)  # units never interact: SnAp-1 is exact


@pytest.mark.parametrize("kind", CELLS)
def test_snap1_is_exact_for_a_diagonal_recurrent_weight_and_not_otherwise(kind):
    cell, xs, ys, loss_fn, params = _setup(kind, readout=True)
    _, g_full = _grads(bptt.snap, cell, xs, ys, loss_fn, params)
    _, g0 = _grads(_bptt, cell, xs, ys, loss_fn, params)
    err = np.linalg.norm(g_full - g0) / np.linalg.norm(g0)
    assert 1e-6 < err < 0.5  # an approximation when the units interact, not a bad one
    H = cell.hidden_size
    with tl.no_grad():  # each gate block of W_hh diagonal: unit i sees only itself
        cell.weight_hh.copy_(cell.weight_hh.data * np.tile(np.eye(H), (cell.weight_hh.shape[0] // H, 1)))
    _, g0 = _grads(_bptt, cell, xs, ys, loss_fn, params)
    _, g1 = _grads(bptt.snap, cell, xs, ys, loss_fn, params)
    np.testing.assert_allclose(g1, g0, rtol=1e-9, atol=1e-12)


def test_uoro_is_unbiased():
    """The mean of UORO's estimate over many seeds approaches the true gradient, within a band set by its own
    sample variance (z < 4.5 on every coordinate), and that band is narrow enough to see a 40% bias."""
    cell, xs, ys, loss_fn, params = _setup("RNNCell", readout=False, T=4, B=1, H=3)
    _, g0 = _grads(_bptt, cell, xs, ys, loss_fn, params)
    n = 1600
    est = np.stack([_grads(bptt.uoro, cell, xs, ys, loss_fn, params, seed=s)[1] for s in range(n)])
    mean, se = est.mean(axis=0), est.std(axis=0, ddof=1) / np.sqrt(n)
    assert est.std(axis=0).max() > 1e-3  # a random estimate, not an exact one
    z = np.abs(mean - g0) / se
    assert z.max() < 4.5, (z.max(), mean, g0)
    assert np.linalg.norm(4.5 * se) < 0.4 * np.linalg.norm(g0)
    # One seed reproduces itself.
    np.testing.assert_array_equal(_grads(bptt.uoro, cell, xs, ys, loss_fn, params, seed=3)[1], est[3])


def test_compare_gradient_methods_reports_every_method_and_restores_grads():
    cell, xs, ys, loss_fn, params = _setup("LSTMCell", readout=True, T=8)
    for p in params:
        p.grad = np.full(p.shape, 7.0)
    res = bptt.compare_gradient_methods(cell, xs, ys, loss_fn, methods=("bptt", "tbptt:3", "rtrl", "uoro", "snap1"))
    assert list(res) == ["bptt", "tbptt:3", "rtrl", "uoro", "snap1"]
    for r in res.values():
        assert set(r) == {"loss", "seconds", "peak_mib", "cosine", "rel_error"}
        assert r["seconds"] > 0 and r["peak_mib"] > 0
    assert res["bptt"]["rel_error"] == 0.0 and res["rtrl"]["rel_error"] < 1e-9
    assert res["tbptt:3"]["rel_error"] > 1e-6 and res["tbptt:3"]["cosine"] < 1
    assert -1 <= res["uoro"]["cosine"] < 1
    for p in params:
        np.testing.assert_array_equal(p.grad, 7.0)


def test_bad_arguments_are_named():
    cell, xs, ys, loss_fn, _ = _setup("RNNCell", readout=False)
    with pytest.raises(ValueError, match=r"rtrl: ys needs one entry per step \(6\)"):
        bptt.rtrl(cell, xs, ys[:3], loss_fn)
    with pytest.raises(TypeError, match="rtrl: loss_fn must be callable"):
        bptt.rtrl(cell, xs, ys, None)
    with pytest.raises(TypeError, match="uoro: loss_fn must return a one-element Tensor"):
        bptt.uoro(cell, xs, ys, lambda h, y: h)
    with pytest.raises(ValueError, match="snap: only SnAp-1"):
        bptt.snap(cell, xs, ys, loss_fn, n=2)
    with pytest.raises(ValueError, match="unknown method 'adjoint'"):
        bptt.compare_gradient_methods(cell, xs, ys, loss_fn, methods=("adjoint",))
    with pytest.raises(ValueError, match="truncation must be a positive int"):
        bptt.compare_gradient_methods(cell, xs, ys, loss_fn, methods=("tbptt:x",))
    with pytest.raises(ValueError, match="rtrl: xs must be"):
        bptt.rtrl(cell, np.ones(3), ys, loss_fn)


def test_snap_colours_share_directions_only_between_disjoint_units():
    from tinygrad_lstm.bptt.forward import _colors

    rng = np.random.default_rng(0)
    for _ in range(30):  # random patterns: mostly the greedy branch
        P, S, w = rng.integers(1, 40), rng.integers(1, 10), rng.integers(1, 4)
        units, valid = rng.integers(0, S, (P, w)), (rng.random((P, w)) < 0.7).astype(float)
        color, C = _colors(units, valid)
        assert color.shape == (P,) and C == color.max() + 1
        for c in range(C):
            sets = [set(u[v > 0].tolist()) for u, v in zip(units[color == c], valid[color == c])]
            assert sum(map(len, sets)) == len(set().union(*sets))
    units = np.repeat(np.arange(4), 5)[:, None]  # a cell's pattern: 5 entries per unit, units disjoint
    color, C = _colors(units, np.ones((20, 1)))
    assert C == 5 and np.array_equal(color, np.tile(np.arange(5), 4))


@pytest.mark.parametrize("kind", CELLS)
def test_snap_compressed_directions_give_the_uncompressed_gradient(kind, monkeypatch):
    """One direction per parameter entry (no compression) is the plain SnAp-1: the colours must not change it."""
    from tinygrad_lstm.bptt import forward

    cell, xs, ys, loss_fn, params = _setup(kind, readout=True)
    _, g = _grads(bptt.snap, cell, xs, ys, loss_fn, params)
    monkeypatch.setattr(forward, "_colors", lambda units, valid: (np.arange(units.shape[0]), units.shape[0]))
    _, g_plain = _grads(bptt.snap, cell, xs, ys, loss_fn, params)
    np.testing.assert_allclose(g, g_plain, rtol=1e-12, atol=1e-14)


def test_snap_memory_stays_far_below_rtrl():
    """SnAp-1 keeps (P, B, n) influences and J_theta in C ~ gates x (I + H) directions: no P x B x S array."""
    import tracemalloc

    peaks = {}
    for name, method in [("rtrl", bptt.rtrl), ("snap", bptt.snap)]:
        cell, xs, ys, loss_fn, _ = _setup("LSTMCell", readout=False, T=3, H=32)
        tracemalloc.start()
        method(cell, xs, ys, loss_fn)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks["snap"] < peaks["rtrl"] / 4, peaks
