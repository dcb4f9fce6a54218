"""The BPTT toolkit: analytic Jacobians, recordings checked against hand-retained gradients, truncated BPTT."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from tinygrad_lstm import Tensor, bptt, default_dtype, manual_seed, nn, no_grad, stack
from tinygrad_lstm.nn import Module, Parameter
from tinygrad_lstm.nn.rnn import STEP_OBSERVERS
from tinygrad_lstm.tensor import get_rng

# ------------------------------------------------------------------------------------------------ helpers


class LinearRNNCell(Module):
    """h_t = W h_{t-1} + U x_t (row-vector form: h @ W.T + x @ U.T), optionally through tanh."""

    def __init__(self, W: np.ndarray, U: np.ndarray, tanh: bool = False) -> None:
        self.weight_hh = Parameter(W)
        self.weight_ih = Parameter(U)
        self.tanh = tanh

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        if h is None:
            h = Tensor.zeros(x.shape[0], self.weight_hh.shape[0], dtype=x.dtype)
        z = h @ self.weight_hh.T + x @ self.weight_ih.T
        return z.tanh() if self.tanh else z


class CellLayer(Module):
    """A layer running a cell over time: model(x (T, B, I), h) -> (out (T, B, H), h_T), like nn.RNN."""

    def __init__(self, cell: Module) -> None:
        self.cell = cell
        self.chunk_lengths: list[int] = []

    def forward(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.chunk_lengths.append(x.shape[0])
        outs = []
        for t in range(x.shape[0]):
            h = self.cell(x[t], h)
            outs.append(h)
        return stack(outs), h


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------------ Jacobians


@pytest.mark.parametrize("B", [1, 3])
def test_jacobian_norms_of_linear_rnn_are_norms_of_matrix_powers(B):
    rng = _rng(0)
    H, I, T = 6, 3, 9
    W = rng.standard_normal((H, H)) * 0.45
    cell = LinearRNNCell(W, rng.standard_normal((H, I)))
    got = bptt.jacobian_norms(cell, rng.standard_normal((T, B, I)))
    want = np.array([np.linalg.norm(np.linalg.matrix_power(W, T - t), ord=2) for t in range(T)])
    assert got.shape == (T,)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # the same recurrence, one step at a time: ||W|| at every step
    np.testing.assert_allclose(bptt.step_jacobian_norms(cell, rng.standard_normal((T, B, I))), np.linalg.norm(W, 2))


def test_orthogonal_and_scaled_identity_recurrences():
    rng = _rng(1)
    H, T = 5, 12
    Q, _ = np.linalg.qr(rng.standard_normal((H, H)))
    xs = rng.standard_normal((T, 2, 2))
    np.testing.assert_allclose(bptt.jacobian_norms(LinearRNNCell(Q, rng.standard_normal((H, 2))), xs), 1.0, rtol=1e-12)
    half = LinearRNNCell(0.5 * np.eye(H), rng.standard_normal((H, 2)))
    np.testing.assert_allclose(bptt.jacobian_norms(half, xs), 0.5 ** (T - np.arange(T)), rtol=1e-12)


def test_step_jacobian_norms_of_tanh_rnn_match_numpy():
    rng = _rng(2)
    H, I, T, B = 4, 3, 7, 2
    W, U = rng.standard_normal((H, H)), rng.standard_normal((H, I))
    xs = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H))
    got = bptt.step_jacobian_norms(LinearRNNCell(W, U, tanh=True), xs, h0, reduce="none")
    h, want = h0, np.zeros((T, B))
    for t in range(T):
        h = np.tanh(h @ W.T + xs[t] @ U.T)
        for b in range(B):
            want[t, b] = np.linalg.norm(np.diag(1 - h[b] ** 2) @ W, 2)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_jacobian_norms_of_tanh_rnn_match_chained_numpy_jacobians():
    rng = _rng(3)
    H, I, T, B = 4, 2, 6, 2
    W, U = rng.standard_normal((H, H)) * 0.8, rng.standard_normal((H, I))
    xs = rng.standard_normal((T, B, I))
    got = bptt.jacobian_norms(LinearRNNCell(W, U, tanh=True), Tensor(xs), reduce="max")
    h, steps = np.zeros((B, H)), []
    for t in range(T):
        h = np.tanh(h @ W.T + xs[t] @ U.T)
        steps.append([np.diag(1 - h[b] ** 2) @ W for b in range(B)])
    want = np.zeros((T, B))
    for b in range(B):
        J = np.eye(H)
        for t in reversed(range(T)):
            J = J @ steps[t][b]  # dh_T/dh_t = J_T ... J_{t+1}
            want[t, b] = np.linalg.norm(J, 2)
    np.testing.assert_allclose(got, want.max(axis=1), rtol=1e-10)


def test_jacobian_measurement_leaves_the_cell_alone():
    rng = _rng(4)
    cell = LinearRNNCell(rng.standard_normal((3, 3)), rng.standard_normal((3, 2)), tanh=True)
    cell.weight_hh.grad = np.ones((3, 3))
    cell.weight_ih.requires_grad = False
    bptt.jacobian_norms(cell, rng.standard_normal((4, 2, 2)))
    bptt.step_jacobian_norms(cell, rng.standard_normal((4, 2, 2)))
    np.testing.assert_array_equal(cell.weight_hh.grad, 1.0)
    assert cell.weight_ih.grad is None
    assert cell.weight_hh.requires_grad and not cell.weight_ih.requires_grad


def test_jacobian_norms_run_in_the_cells_dtype():
    manual_seed(10)
    cell32 = nn.GRUCell(2, 3)  # float32 parameters, float64 ndarray inputs
    with default_dtype(np.float64):
        cell64 = nn.GRUCell(2, 3)
    cell64.load_state_dict(cell32.state_dict())
    xs = _rng(21).standard_normal((6, 2, 2))
    np.testing.assert_allclose(bptt.jacobian_norms(cell32, xs), bptt.jacobian_norms(cell64, xs), rtol=1e-4)
    np.testing.assert_allclose(
        bptt.step_jacobian_norms(cell32, xs, np.ones((2, 3))),
        bptt.step_jacobian_norms(cell64, xs, np.ones((2, 3))),
        rtol=1e-4,
    )


def test_jacobian_argument_errors():
    cell = LinearRNNCell(np.eye(2), np.ones((2, 1)))
    with pytest.raises(ValueError, match="jacobian_norms: xs"):
        bptt.jacobian_norms(cell, np.zeros((2, 3, 4, 1)))
    with pytest.raises(ValueError, match="state of shape"):
        bptt.jacobian_norms(cell, np.zeros((3, 2, 1)), state=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="reduce"):
        bptt.step_jacobian_norms(cell, np.zeros((3, 2, 1)), reduce="median")
    with pytest.raises(TypeError, match="callable"):
        bptt.jacobian_norms(42, np.zeros((3, 1)))


# ------------------------------------------------------------------------------------------------ truncated BPTT


def _tanh_layer(seed: int = 5, H: int = 4, I: int = 2) -> CellLayer:
    rng = _rng(seed)
    return CellLayer(LinearRNNCell(rng.standard_normal((H, H)) * 0.6, rng.standard_normal((H, I)), tanh=True))


def _mse(out: Tensor, y: Tensor) -> Tensor:
    d = out - y
    return (d * d).mean()


def test_tbptt_gradients_are_the_sum_of_separate_chunks():
    rng = _rng(6)
    T, B, k = 40, 3, 10
    xs, ys = rng.standard_normal((T, B, 2)), rng.standard_normal((T, B, 4))
    model = _tanh_layer()
    losses, state = bptt.tbptt(model, xs, ys, k, _mse)
    assert len(losses) == 4 and state.is_leaf and not state.requires_grad
    got = {n: p.grad.copy() for n, p in model.named_parameters()}

    # By hand: each chunk from the previous chunk's final state as a constant, gradients summed.
    ref = _tanh_layer()
    want = {n: np.zeros_like(p.data) for n, p in ref.named_parameters()}
    h, want_losses = None, []
    for s in range(0, T, k):
        ref.zero_grad()
        out, h_new = ref(Tensor(xs[s : s + k]), None if h is None else Tensor(h))
        loss = _mse(out, Tensor(ys[s : s + k]))
        loss.backward()
        want_losses.append(loss.item())
        for n, p in ref.named_parameters():
            want[n] += p.grad
        h = h_new.data
    np.testing.assert_allclose(losses, want_losses, rtol=1e-12)
    for n in want:
        np.testing.assert_allclose(got[n], want[n], rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(state.data, h)


def test_tbptt_no_gradient_crosses_a_chunk_boundary():
    rng = _rng(7)
    T, k = 40, 10
    xs = Tensor(rng.standard_normal((T, 2, 2)), requires_grad=True)
    ys = rng.standard_normal((T, 2, 4))
    calls = []

    def last_chunk_only(out: Tensor, y: Tensor) -> Tensor:
        calls.append(out.shape[0])
        return _mse(out, y) * (1.0 if len(calls) == 4 else 0.0)

    bptt.tbptt(_tanh_layer(), xs, ys, k, last_chunk_only)
    np.testing.assert_array_equal(xs.grad[:30], 0.0)  # exactly zero: the state was cut at t = 10, 20, 30
    assert np.abs(xs.grad[30:]).min() > 0

    # Without truncation the same loss does reach the first chunk's inputs.
    full = Tensor(xs.data, requires_grad=True)
    model = _tanh_layer()
    out, _ = model(full)
    _mse(out[30:], Tensor(ys[30:])).backward()
    assert np.abs(full.grad[:10]).max() > 1e-6


def test_tbptt_short_last_chunk_optimizer_and_initial_state():
    rng = _rng(8)
    model = _tanh_layer()
    steps = []

    class Recorder:
        def step(self) -> None:
            steps.append({n: p.grad.copy() for n, p in model.named_parameters()})

        def zero_grad(self) -> None:
            model.zero_grad()

    h0 = Tensor(rng.standard_normal((2, 4)), requires_grad=True)
    losses, _ = bptt.tbptt(
        model, rng.standard_normal((25, 2, 2)), rng.standard_normal((25, 2, 4)), 10, _mse, Recorder(), h0
    )
    assert model.chunk_lengths == [10, 10, 5] and len(losses) == 3 and len(steps) == 3
    assert all(p.grad is None for p in model.parameters())  # zero_grad after every step
    assert h0.grad is None  # the given state is detached too: a caller's graph is never extended


def test_tbptt_with_an_lstm_layer_and_its_tuple_state():
    rng = _rng(9)
    T, k = 10, 4
    xs, ys = rng.standard_normal((T, 2, 3)), rng.standard_normal((T, 2, 5))
    with default_dtype(np.float64):
        manual_seed(0)
        lstm = nn.LSTM(3, 5)
        manual_seed(0)
        ref = nn.LSTM(3, 5)
    losses, (h, c) = bptt.tbptt(lstm, xs, ys, k, _mse)
    assert len(losses) == 3 and h.shape == c.shape == (1, 2, 5) and not (h.requires_grad or c.requires_grad)
    total = {n: np.zeros_like(p.data) for n, p in ref.named_parameters()}
    state = None
    for s in range(0, T, k):
        ref.zero_grad()
        out, state = ref(Tensor(xs[s : s + k]), state)
        _mse(out, Tensor(ys[s : s + k])).backward()
        state = tuple(Tensor(x.data) for x in state)
        for n, p in ref.named_parameters():
            total[n] += p.grad
    for n, p in lstm.named_parameters():
        np.testing.assert_allclose(p.grad, total[n], rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(c.data, state[1].data)


def test_tbptt_batch_first_and_errors():
    model = _tanh_layer()

    def tm(x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        out, h = CellLayer.forward(model, x.transpose(1, 0, 2), h)
        return out.transpose(1, 0, 2), h

    tm.batch_first = True  # chunks are cut along axis 1 then
    xs, ys = np.ones((2, 7, 2)), np.zeros((2, 7, 4))
    losses, _ = bptt.tbptt(tm, xs, ys, 3, _mse)
    assert len(losses) == 3 and model.chunk_lengths == [3, 3, 1]
    with pytest.raises(ValueError, match="k must be a positive int"):
        bptt.tbptt(model, xs, ys, 0, _mse)
    with pytest.raises(ValueError, match="not aligned"):
        bptt.tbptt(model, np.ones((7, 2, 2)), np.zeros((6, 2, 4)), 3, _mse)
    with pytest.raises(TypeError, match=r"must return \(out, state\)"):
        bptt.tbptt(lambda x, s: x, np.ones((7, 2, 2)), None, 3, lambda o, y: o.sum())


# ------------------------------------------------------------------------------------------------ recording


def _run_layer(layer: Module, x: np.ndarray, loss_on: str = "last") -> tuple[bptt.Recording, list]:
    """Forward with return_states, retain every state by hand too, loss on the last output, backward."""
    with bptt.record() as rec:
        out, _, states = layer(Tensor(x), return_states=True)
        for per_layer in states:
            for per_dir in per_layer:
                for s in per_dir:
                    for part in s if isinstance(s, tuple) else (s,):
                        part.retain_grad()
        target = out[-1] if loss_on == "last" else out
        (target * target).sum().backward()
    return rec, states


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_recording_of_stacked_bidirectional_layers_matches_hand_retained_grads(kind):
    manual_seed(0)
    with default_dtype(np.float64):
        layer = getattr(nn, kind)(3, 4, num_layers=2, bidirectional=True)
        rec, states = _run_layer(layer, _rng(10).standard_normal((6, 2, 3)), loss_on="all")
    assert STEP_OBSERVERS == []
    assert rec.layers() == [(lay, d, kind.lower()) for lay in range(2) for d in range(2)]
    names = ("h", "c") if kind == "LSTM" else ("h",)
    for lay in range(2):
        for d in range(2):
            for i, name in enumerate(names):
                parts = [s[i] if isinstance(s, tuple) else s for s in states[lay][d]]
                want = np.stack([p.grad for p in parts])
                assert rec.grads(name, lay, d).shape == (6, 2, 4)
                np.testing.assert_array_equal(rec.grads(name, lay, d), want)
                np.testing.assert_array_equal(rec.states(name, lay, d), np.stack([p.data for p in parts]))
                np.testing.assert_allclose(rec.grad_norms(name, lay, d), np.sqrt((want**2).sum(axis=(1, 2))))


def test_grads_are_zero_where_nothing_flowed_and_reverse_direction_order():
    manual_seed(1)
    with default_dtype(np.float64):
        rec, _ = _run_layer(nn.GRU(2, 3, bidirectional=True), _rng(11).standard_normal((5, 2, 2)))
    # The loss reads output[-1]: the reverse direction's state at t = T-1 is its *first* step, so only it
    # gets a gradient; the forward direction's states all do.
    g = rec.grads("h", 0, 1)
    np.testing.assert_array_equal(g[:-1], 0.0)
    assert np.abs(g[-1]).min() > 0 and (rec.grad_norms("h", 0, 0) > 0).all()
    np.testing.assert_array_equal(rec.times(0, 1), np.arange(5))


def test_forget_product_and_saturation_match_direct_computation():
    manual_seed(2)
    with default_dtype(np.float64):
        layer = nn.LSTM(2, 5, bidirectional=True)
        rec, _ = _run_layer(layer, _rng(12).standard_normal((7, 3, 2)) * 3)
    for d in range(2):
        f = rec.gates("f", 0, d)
        assert f.shape == (7, 3, 5)
        want = np.empty(7)
        for t in range(7):
            span = range(t + 1, 7) if d == 0 else range(t)  # the steps after t in the direction of time
            prod = np.ones((3, 5))
            for s in span:
                prod = prod * f[s]
            want[t] = prod.mean()
        np.testing.assert_allclose(rec.forget_product(0, d), want, rtol=1e-12)
        for gate in "ifo":
            g = rec.gates(gate, 0, d)
            count = np.array([sum(1 for v in g[t].ravel() if v < 0.2 or v > 0.8) for t in range(7)])
            np.testing.assert_allclose(rec.saturation(gate, 0.2, 0.8, 0, d), count / 15)
    assert 0 < rec.saturation("o", 0.2, 0.8).sum()  # the inputs are large: some gates do saturate


def test_bare_cells_are_numbered_in_call_order_and_runs_split_repeated_layers(tmp_path):
    manual_seed(3)
    with default_dtype(np.float64):
        cell = nn.LSTMCell(2, 3)
        layer = nn.RNN(2, 3)
        xs = Tensor(_rng(13).standard_normal((4, 2, 2)))
        with bptt.record() as rec:
            s = None
            for t in range(4):
                s = cell(xs[t], s)
            layer(xs)
            out, _ = layer(xs[:3])
            (s[0].sum() + out.sum()).backward()
    assert rec.states("c", module=cell).shape == (4, 2, 3)
    np.testing.assert_array_equal(rec.times(module=cell), np.arange(4))
    assert rec.num_runs(module=layer) == 2 and rec.states(module=layer).shape == (3, 2, 3)
    assert rec.states(module=layer, run=0).shape == (4, 2, 3)
    assert rec.states(module=layer, run=None).shape == (7, 2, 3)
    with pytest.raises(RuntimeError, match="no gradient has reached"):
        rec.grads(module=layer, run=0)  # the first run was never part of a loss
    with pytest.raises(ValueError, match="pass module="):
        rec.states()  # two modules recorded layer 0, direction 0
    with pytest.raises(KeyError, match="run 5 does not exist"):
        rec.states(module=layer, run=5)
    with np.load(rec.to_npz(tmp_path / "r.npz"), allow_pickle=False) as z:
        assert list(z["streams"]) == ["m0.l0.d0", "m1.l0.d0.r0", "m1.l0.d0.r1"]
        np.testing.assert_array_equal(z["m0.l0.d0.c_grad"], rec.grads("c", module=cell))
        assert "m1.l0.d0.r0.h_grad" not in z and "m1.l0.d0.r1.h_grad" in z  # no gradient reached run 0


def test_recording_errors_list_what_exists():
    manual_seed(4)
    with default_dtype(np.float64):
        layer = nn.GRU(2, 3, num_layers=2)
        with bptt.record() as rec:
            out, _ = layer(Tensor(_rng(14).standard_normal((3, 1, 2))))
            with pytest.raises(RuntimeError, match=r"call loss\.backward"):
                rec.grads()
            out.sum().backward()
    with pytest.raises(KeyError, match=r"layer=2 direction=0; recorded: layer=0 direction=0 .*layer=1"):
        rec.states(layer=2)
    with pytest.raises(ValueError, match=r"direction=1"):  # NotRecordedError is a KeyError and a ValueError
        rec.grad_norms(direction=1)
    with pytest.raises(KeyError, match=r"no state 'c' .* recorded states: \('h',\)"):
        rec.states("c")
    with pytest.raises(KeyError, match=r"no gate 'f' .* recorded gates: \('r', 'z', 'n'\)"):
        rec.gates("f")
    with pytest.raises(KeyError, match="needs an LSTM"):
        rec.forget_product()
    with pytest.raises(ValueError, match="low < high"):
        rec.saturation("z", 0.9, 0.1)
    with pytest.raises(KeyError, match="nothing was recorded"):
        bptt.Recording().states()
    with no_grad(), bptt.record() as rec2:
        layer(Tensor(np.ones((2, 1, 2))))
    with pytest.raises(RuntimeError, match="do not require grad"):
        rec2.grads()


def test_observer_is_removed_even_when_the_block_raises():
    with pytest.raises(ZeroDivisionError), bptt.record():
        assert len(STEP_OBSERVERS) == 1
        1 / 0  # noqa: B018
    assert STEP_OBSERVERS == []
    with bptt.record() as outer, bptt.record() as inner:
        assert len(STEP_OBSERVERS) == 2
    assert STEP_OBSERVERS == [] and outer is not inner


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_first_nonfinite_reports_the_step_where_nan_entered():
    T, t0 = 12, 7
    manual_seed(5)
    with default_dtype(np.float64):
        layer = nn.LSTM(2, 3)

        def poison(r) -> None:  # an extra observer: a NaN gradient enters at h_{t0}
            if r.t == t0:
                r.h.register_hook(lambda g: np.full_like(g, np.nan))

        with bptt.record() as rec:
            STEP_OBSERVERS.append(poison)
            try:
                out, _ = layer(Tensor(_rng(15).standard_normal((T, 2, 2))))
            finally:
                STEP_OBSERVERS.remove(poison)
            (out[-1] ** 2).sum().backward()
    assert rec.first_nonfinite() == (t0, "h")
    assert np.isnan(rec.grads()[: t0 + 1]).all() and np.isfinite(rec.grads()[t0 + 1 :]).all()

    with default_dtype(np.float64), bptt.record() as clean:
        out, _ = layer(Tensor(_rng(15).standard_normal((T, 2, 2))))
        (out[-1] ** 2).sum().backward()
    assert clean.first_nonfinite() is None


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_first_nonfinite_in_a_reverse_direction_and_in_c():
    manual_seed(6)
    with default_dtype(np.float64):
        layer = nn.LSTM(2, 3, bidirectional=True)

        def poison(r) -> None:
            if r.direction == 1 and r.t == 4:  # the reverse direction runs t = 5, 4, ...: backward meets t=4 late
                r.c.register_hook(lambda g: np.full_like(g, np.inf))

        with bptt.record() as rec:
            STEP_OBSERVERS.append(poison)
            try:
                out, _ = layer(Tensor(_rng(16).standard_normal((6, 2, 2))))
            finally:
                STEP_OBSERVERS.remove(poison)
            out.sum().backward()
    assert rec.first_nonfinite() == (4, "c")
    assert rec.first_nonfinite(direction=0) is None


def test_npz_and_plot(tmp_path):
    manual_seed(7)
    with default_dtype(np.float64):
        rec, _ = _run_layer(nn.LSTM(2, 4, num_layers=2), _rng(17).standard_normal((8, 3, 2)))
    path = rec.to_npz(tmp_path / "rec.npz")
    with np.load(path, allow_pickle=False) as z:
        assert list(z["streams"]) == ["l0.d0", "l1.d0"] and list(z["kinds"]) == ["lstm", "lstm"]
        np.testing.assert_array_equal(z["l1.d0.h_grad"], rec.grads("h", 1))
        np.testing.assert_array_equal(z["l0.d0.gate_f"], rec.gates("f"))
        np.testing.assert_array_equal(z["l0.d0.c"], rec.states("c"))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    png = rec.plot(tmp_path / "sub" / "rec.png", layer=1)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


# ------------------------------------------------------------------------------------------------ cells


def test_tanh_rnn_decays_geometrically_and_lstm_with_forget_bias_does_not():
    T, H, I, B = 100, 8, 2, 4
    xs = Tensor(_rng(18).standard_normal((T, B, I)))
    manual_seed(8)
    with default_dtype(np.float64):
        rnn_cell = nn.RNNCell(I, H)
        W = _rng(19).standard_normal((H, H))
        rnn_cell.weight_hh.data = 0.5 * W / np.linalg.norm(W, 2)  # ||W_hh|| = 0.5
        lstm_cell = nn.LSTMCell(I, H)
        lstm_cell.bias_ih.data[H : 2 * H] = 5.0
        lstm_cell.bias_hh.data[H : 2 * H] = 0.0
        head = nn.Linear(H, 1)
        norms = {}
        for name, cell in (("rnn", rnn_cell), ("lstm", lstm_cell)):
            with bptt.record() as rec:
                s = None
                for t in range(T):
                    s = cell(xs[t], s)
                h = s[0] if isinstance(s, tuple) else s
                (head(h) ** 2).sum().backward()
            norms[name] = rec.grad_norms()
    n = norms["rnn"]
    # One tanh step scales a gradient by at most ||diag(tanh') W|| <= ||W|| = 0.5: at least geometric decay.
    assert (n[:-1] <= 0.5 * n[1:] * (1 + 1e-12)).all()
    rnn_ratio, lstm_ratio = n[0] / n[-1], norms["lstm"][0] / norms["lstm"][-1]
    assert rnn_ratio < 0.5 ** (T - 1)
    assert lstm_ratio > 1e3 * rnn_ratio and lstm_ratio > 1e-4


def test_lstm_cell_jacobian_norms_against_torch():
    torch = pytest.importorskip("torch")
    T, H, I, B = 6, 4, 3, 2
    manual_seed(9)
    with default_dtype(np.float64):
        cell = nn.LSTMCell(I, H)
    xs = _rng(20).standard_normal((T, B, I))
    got = bptt.jacobian_norms(cell, xs, reduce="none")
    step = bptt.step_jacobian_norms(cell, xs, reduce="none")

    tc = torch.nn.LSTMCell(I, H).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(tc, name).copy_(torch.from_numpy(getattr(cell, name).data))
    x = torch.from_numpy(xs)
    states = [(torch.zeros(B, H, dtype=torch.float64), torch.zeros(B, H, dtype=torch.float64))]
    with torch.no_grad():
        for t in range(T):
            states.append(tc(x[t], states[-1]))
    want, want_step = np.zeros((T, B)), np.zeros((T, B))
    for t in range(T):
        for b in range(B):
            c_t = states[t][1][b : b + 1]

            def run(h, t=t, c_t=c_t, b=b, steps=T):
                s = (h.reshape(1, H), c_t)
                for u in range(t, steps):
                    s = tc(x[u, b : b + 1], s)
                return s[0].reshape(H)

            h_t = states[t][0][b]
            want[t, b] = np.linalg.norm(torch.autograd.functional.jacobian(run, h_t).numpy(), 2)
            J1 = torch.autograd.functional.jacobian(lambda h, run=run, t=t: run(h, steps=t + 1), h_t)
            want_step[t, b] = np.linalg.norm(J1.numpy(), 2)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(step, want_step, rtol=1e-10)


# ------------------------------------------------------------------------------------------------ the study


def test_compare_cells_table_and_plot(tmp_path):
    res = bptt.compare_cells(["rnn", "lstm", "gru"], steps=30, hidden=6, batch=3, path=tmp_path / "b.png")
    assert set(res["norms"]) == {"rnn", "lstm", "gru"} and all(n.shape == (30,) for n in res["norms"].values())
    assert res["path"].read_bytes()[:4] == b"\x89PNG"
    lines = res["table"].splitlines()
    assert lines[0].split()[:2] == ["cell", "t=0"] and [ln.split()[0] for ln in lines[2:]] == ["rnn", "lstm", "gru"]
    n = res["norms"]["rnn"]
    assert float(lines[2].split()[-1]) == pytest.approx(n[0] / n[-1], rel=1e-3)
    # The same seed gives the same numbers; the forget bias changes only the LSTM's.
    again = bptt.compare_cells(["rnn", "lstm"], steps=30, hidden=6, batch=3, path=None, forget_bias=3.0)
    np.testing.assert_array_equal(again["norms"]["rnn"], res["norms"]["rnn"])
    assert again["norms"]["lstm"][0] > 10 * res["norms"]["lstm"][0]
    # The measurement seeds its own initialization but leaves the caller's random stream where it was.
    manual_seed(123)
    expected = get_rng().random()
    manual_seed(123)
    bptt.compare_cells(["gru"], steps=5, hidden=3, batch=2, path=None, seed=9)
    assert get_rng().random() == expected
    with pytest.raises(ValueError, match="unknown cell"):
        bptt.compare_cells(["lstm", "transformer"], path=None)
    with pytest.raises(ValueError, match="unknown task"):
        bptt.compare_cells(["lstm"], task="copy", path=None)


def test_cli_options_print_the_table_and_write_the_plot(tmp_path, capsys):
    parser = bptt.add_cli_arguments(argparse.ArgumentParser())
    out = tmp_path / "bptt.png"
    args = parser.parse_args(
        ["--steps", "20", "--cells", "rnn,lstm", "--hidden", "5", "--batch", "2", "--out", str(out)]
    )
    assert bptt.run_cli(args) == 0
    text = capsys.readouterr().out
    assert "rnn " in text and "lstm " in text and "norm[0]/norm[T-1]" in text and str(out) in text
    assert out.read_bytes()[:4] == b"\x89PNG"
    bad = parser.parse_args(["--cells", "rnn,lsmt", "--out", str(tmp_path / "x.png")])
    assert bptt.run_cli(bad) == 2 and "unknown cell" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_tbptt_clips_each_chunk_before_the_step():
    from tinygrad_lstm import optim
    from tinygrad_lstm.nn import functional as F

    manual_seed(0)
    layer = nn.RNN(2, 4)
    xs = Tensor.randn(12, 3, 2) * 50  # large inputs: large gradients
    ys = Tensor.randn(12, 3, 4)
    seen = []

    class Spy(optim.SGD):
        def step(self):
            seen.append(np.sqrt(sum(float((p.grad**2).sum()) for p in layer.parameters())))
            super().step()

    losses, _ = bptt.tbptt(layer, xs, ys, 4, F.mse_loss, Spy(layer.parameters(), lr=0.01), max_norm=0.5)
    assert len(losses) == len(seen) == 3
    assert max(seen) <= 0.5 + 1e-6
    with pytest.raises(ValueError, match="needs an optimizer"):
        bptt.tbptt(layer, xs, ys, 4, F.mse_loss, None, max_norm=1.0)


def test_tbptt_starts_from_zeroed_gradients_when_it_steps_the_optimizer():
    from tinygrad_lstm import optim
    from tinygrad_lstm.nn import functional as F

    rng = _rng(21)
    xs, ys = rng.standard_normal((8, 2, 2)), rng.standard_normal((8, 2, 3))
    manual_seed(3)
    with default_dtype(np.float64):
        layer = nn.RNN(2, 3)
        fresh = nn.RNN(2, 3)
    fresh.load_state_dict(layer.state_dict())
    # What the first step must see: the first chunk's gradient alone.
    out, _ = fresh(Tensor(xs[:4]))
    F.mse_loss(out, Tensor(ys[:4])).backward()
    want = {n: p.grad.copy() for n, p in fresh.named_parameters()}

    # An earlier backward leaves (large) gradients on the layer's parameters.
    out, _ = layer(Tensor(xs * 100))
    (out * out).sum().backward()
    assert all(np.abs(p.grad).max() > 0 for p in layer.parameters())
    seen = []

    class Spy(optim.SGD):
        def step(self):
            seen.append({n: p.grad.copy() for n, p in layer.named_parameters()})
            super().step()

    bptt.tbptt(layer, xs, ys, 4, F.mse_loss, Spy(layer.parameters(), lr=0.1))
    assert len(seen) == 2
    for n in want:
        np.testing.assert_allclose(seen[0][n], want[n], rtol=1e-12, atol=1e-15)

    # Without an optimizer nothing is zeroed: the chunks' gradients add onto what .grad holds, as backward does.
    before = {n: p.grad.copy() if p.grad is not None else 0.0 for n, p in fresh.named_parameters()}
    bptt.tbptt(fresh, xs[:4], ys[:4], 4, F.mse_loss)
    for n, p in fresh.named_parameters():
        np.testing.assert_allclose(p.grad, before[n] + want[n], rtol=1e-12)
