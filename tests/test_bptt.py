"""The BPTT toolkit: analytic Jacobians, recordings checked against hand-retained gradients, truncated BPTT."""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_lstm import Tensor, bptt, stack
from tinygrad_lstm.nn import Module, Parameter

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
