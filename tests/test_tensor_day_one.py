"""The Tensor methods a PyTorch user reaches for on day one, against torch (float64) and numpy."""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_lstm import Tensor, gradcheck

rng = np.random.default_rng(0)


def _x(*shape):
    return Tensor(rng.standard_normal(shape), requires_grad=True)


def test_argmax_argmin_var_std_follow_numpy():
    a = rng.standard_normal((3, 4))
    t = Tensor(a)
    assert t.argmax().item() == a.argmax() and t.argmin(axis=1).data.tolist() == a.argmin(axis=1).tolist()
    assert t.argmax(axis=0, keepdims=True).shape == (1, 4) and t.argmax().dtype == np.int64
    np.testing.assert_allclose(t.var(axis=1).data, a.var(axis=1))
    np.testing.assert_allclose(t.std(ddof=1).data, a.std(ddof=1))
    with pytest.raises(ValueError, match="var: ddof=5"):
        Tensor(np.ones(3)).var(ddof=5)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.var(axis=0, ddof=1),
        lambda x: x.std(axis=1),
        lambda x: x.sin() * x.cos(),
        lambda x: x.gather(1, np.array([[0, 2, 2], [1, 1, 0], [3, 0, 1]])),
        lambda x: x.topk(2, axis=1)[0],
        lambda x: x.clone() * 2.0,
        lambda x: x.unsqueeze(0).squeeze().flatten().view(4, 3),
    ],
)
def test_gradients_against_finite_differences(fn):
    assert gradcheck(fn, [_x(3, 4)])


def test_against_torch():
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((3, 4))
    x, tx = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    idx = np.array([[0, 2, 2], [1, 1, 0], [3, 0, 1]])
    v, i = x.topk(2, axis=1)
    tv, ti = tx.topk(2, dim=1)
    np.testing.assert_array_equal(i.data, ti.numpy())
    ours = (x.gather(1, idx).sum() + v.sum() + x.var(axis=0, ddof=1).sum() + x.sin().sum()).sum()
    theirs = tx.gather(1, torch.tensor(idx)).sum() + tv.sum() + tx.var(dim=0).sum() + tx.sin().sum()
    ours.backward()
    theirs.backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-9)
    y = Tensor(a)
    np.testing.assert_array_equal(y.transpose(0, 1).data, torch.tensor(a).transpose(0, 1).numpy())
    b = rng.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(Tensor(b).transpose(0, 2).data, torch.tensor(b).transpose(0, 2).numpy())
    np.testing.assert_array_equal(Tensor(b).transpose(2, 0, 1).data, b.transpose(2, 0, 1))


def test_shapes_sizes_and_errors():
    t = Tensor(np.zeros((2, 1, 3)))
    assert t.size() == (2, 1, 3) and t.size(-1) == 3 and t.numel() == 6
    assert t.squeeze().shape == (2, 3) and t.squeeze(0).shape == (2, 1, 3) and t.unsqueeze(-1).shape == (2, 1, 3, 1)
    assert t.flatten(1).shape == (2, 3) and t.view(3, 2).shape == (3, 2)
    with pytest.raises(ValueError, match="topk: k=5"):
        t.topk(5)
    with pytest.raises(ValueError, match="gather: index must be an int array"):
        t.gather(0, np.zeros((2, 1, 3)))
    with pytest.raises(IndexError, match="gather: index out of range"):
        t.gather(2, np.full((2, 1, 3), 3))
    with pytest.raises(ValueError, match="unsqueeze: axis 5"):
        t.unsqueeze(5)
