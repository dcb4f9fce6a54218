"""Deferred matmul weight gradients (ops.Outer) give exactly the per-step sums they replace.

backward(retain_graph=True) never defers (it keeps each node's own gradient for drawing), so it is the
reference: the same graph built twice must give the same gradients both ways.
"""

import numpy as np
import pytest

from tinygrad_lstm import Tensor


def _grads(build, leaves, retain):
    for p in leaves:
        p.grad = None
    build().backward(retain_graph=retain)
    return [p.grad.copy() for p in leaves]


def _same_both_ways(build, leaves, rtol=1e-12):
    lazy = _grads(build, leaves, retain=False)
    eager = _grads(build, leaves, retain=True)
    for a, b in zip(lazy, eager):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-14)
    return lazy


rng = np.random.default_rng(0)


def test_transposed_weight_at_every_step_like_an_rnn_cell_loop():
    W = Tensor(rng.standard_normal((3, 4)) * 0.5, requires_grad=True)
    U = Tensor(rng.standard_normal((4, 2)), requires_grad=True)
    xs = rng.standard_normal((6, 5, 2))

    def build():
        h = Tensor(np.zeros((5, 4)))
        for t in range(6):
            h = (Tensor(xs[t]) @ U.T + h[:, :3] @ W).tanh()  # U.T: a fresh transpose at each step
        return (h * h).sum()

    gW, gU = _same_both_ways(build, [W, U])
    assert np.abs(gU).sum() > 0 and np.abs(gW).sum() > 0


def test_linear_nodes_at_every_step_like_an_lstm_cell_loop():
    """ops.Linear defers its weight's terms too; two weights share each step's gate gradient as a factor."""
    from tinygrad_lstm.nn.functional import affine

    W_ih = Tensor(rng.standard_normal((8, 3)) * 0.5, requires_grad=True)
    W_hh = Tensor(rng.standard_normal((8, 2)) * 0.5, requires_grad=True)
    b = Tensor(rng.standard_normal(8), requires_grad=True)
    xs = rng.standard_normal((5, 4, 3))

    def build():
        h = Tensor(np.zeros((4, 2)))
        for t in range(5):
            z = affine(Tensor(xs[t]), W_ih, b) + affine(h, W_hh)
            h = z[:, :2].tanh() * z[:, 2:4].sigmoid()
        return (h * h).sum()

    grads = _same_both_ways(build, [W_ih, W_hh, b])
    assert all(np.abs(g).sum() > 0 for g in grads)


def test_bias_terms_are_deferred_too_and_mix_with_dense_ones():
    """A Linear bias's gradient (a column sum of each step's g) is deferred as g^T @ 1 and may meet other terms."""
    from tinygrad_lstm.nn.functional import affine

    W = Tensor(rng.standard_normal((3, 2)), requires_grad=True)
    b = Tensor(rng.standard_normal(3), requires_grad=True)
    xs = rng.standard_normal((4, 5, 2))

    def build():
        out = Tensor(np.zeros((5, 3)))
        for t in range(4):
            out = out + affine(Tensor(xs[t]), W, b).tanh() * b  # b: a deferred term and a dense one per step
        return (out * out).sum() + b.sum()

    _, gb = _same_both_ways(build, [W, b])
    assert gb.shape == (3,) and np.abs(gb).sum() > 0


def test_shared_weight_also_used_elementwise_mixes_dense_and_deferred_terms():
    W = Tensor(rng.standard_normal((3, 3)), requires_grad=True)
    x = Tensor(rng.standard_normal((4, 3)), requires_grad=True)

    def build():
        h = x
        for _ in range(3):
            h = (h @ W).sigmoid() * W.sum(axis=0)  # W reaches the loss through a matmul and a reduction
        return (h @ W.T).sum() + (W * W).sum()

    _same_both_ways(build, [W, x])


def test_batched_left_operand_and_float32_weight():
    W = Tensor(rng.standard_normal((3, 2)).astype(np.float32), requires_grad=True)
    a = Tensor(rng.standard_normal((2, 5, 3)))

    def build():
        return ((a @ W) ** 2).sum() + ((a[0] @ W).tanh()).sum()

    (gW,) = _same_both_ways(build, [W], rtol=1e-5)
    assert gW.dtype == np.float32 and gW.shape == (3, 2)


def test_hook_and_retain_grad_on_a_transpose_see_the_full_gradient():
    W = Tensor(rng.standard_normal((3, 3)), requires_grad=True)
    x = Tensor(rng.standard_normal((2, 3)))
    seen = []
    WT = W.T
    WT.retain_grad()
    WT.register_hook(lambda g: seen.append(g.copy()))
    loss = ((x @ WT) @ WT).sum()
    loss.backward()
    expected_WT = x.data.T @ np.ones((2, 3)) @ WT.data.T + (x.data @ WT.data).T @ np.ones((2, 3))
    np.testing.assert_allclose(seen[0], expected_WT, rtol=1e-12)
    np.testing.assert_allclose(WT.grad, expected_WT, rtol=1e-12)
    np.testing.assert_allclose(W.grad, expected_WT.T, rtol=1e-12)


def test_leaf_weight_accumulates_across_two_backward_calls():
    W = Tensor(rng.standard_normal((3, 3)), requires_grad=True)
    x = Tensor(rng.standard_normal((2, 3)))
    (x @ W).sum().backward()
    first = W.grad.copy()
    (x @ W).sum().backward()
    np.testing.assert_allclose(W.grad, 2 * first, rtol=1e-12)


@pytest.mark.parametrize("steps", [1, 2, 50])
def test_many_terms_equal_the_dense_sum(steps):
    W = Tensor(rng.standard_normal((8, 16)), requires_grad=True)
    xs = [rng.standard_normal((3, 8)) for _ in range(steps)]
    loss = None
    for x in xs:
        term = (Tensor(x) @ W).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    np.testing.assert_allclose(W.grad, sum(x.T @ np.ones((3, 16)) for x in xs), rtol=1e-12)


@pytest.mark.parametrize("block_bytes", [1, 600, 1 << 20])
def test_factors_stacked_in_blocks_give_the_same_sum(block_bytes, monkeypatch):
    """Stacking in blocks (one term each, a few, all) changes only how the sum over time is grouped."""
    from tinygrad_lstm import ops
    from tinygrad_lstm.nn.functional import affine

    monkeypatch.setattr(ops, "_BLOCK_BYTES", block_bytes)
    W_ih = Tensor(rng.standard_normal((8, 3)), requires_grad=True)
    W_hh = Tensor(rng.standard_normal((8, 2)), requires_grad=True)
    xs = rng.standard_normal((7, 4, 3))

    def build():
        h = Tensor(np.zeros((4, 2)))
        for t in range(7):
            z = affine(Tensor(xs[t]), W_ih) + affine(h, W_hh)
            h = z[:, :2].tanh() * z[:, 2:4].sigmoid()
        return (h * h).sum()

    expected = {1: [(i, i + 1) for i in range(7)], 600: [(0, 2), (2, 4), (4, 6), (6, 7)], 1 << 20: [(0, 7)]}
    # 7 terms of 4 x 8 float64 gate gradients (256 bytes each, the larger factor)
    assert ops._blocks([np.zeros((4, 8))] * 7, [np.zeros((4, 3))] * 7) == expected[block_bytes]
    _same_both_ways(build, [W_ih, W_hh])


def test_a_deferred_weight_gradient_becomes_grad_without_a_copy(monkeypatch):
    """The product computed for a weight is handed to .grad as it is (it is held by nothing else)."""
    from tinygrad_lstm import ops
    from tinygrad_lstm.nn import LSTMCell

    made = []
    value = ops.Outer.value
    monkeypatch.setattr(ops.Outer, "value", lambda self, *a: made.append(out := value(self, *a)) or out)
    cell = LSTMCell(3, 4)
    hc = None
    for _ in range(3):
        hc = cell(Tensor(rng.standard_normal((2, 3)).astype(np.float32)), hc)
    hc[0].sum().backward()
    assert any(cell.weight_ih.grad is m for m in made) and any(cell.weight_hh.grad is m for m in made)
