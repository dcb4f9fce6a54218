"""gradcheck itself: it passes correct VJPs, and it catches wrong ones, naming the input, index and values."""

from __future__ import annotations

import re

import numpy as np
import pytest

import tinygrad_lstm as tl
from tinygrad_lstm import GradcheckError, Tensor, gradcheck, ops
from tinygrad_lstm.tensor import _apply


class WrongTanh(ops.Tanh):
    """tanh with a deliberately wrong VJP: forgets to square the output."""

    def backward(self, g):
        return (g * (1 - self.saved[0]),)


class HalfGradMul(ops.Mul):
    """Right VJP for the first input, off by a factor 2 for the second."""

    def backward(self, g):
        ga, gb = super().backward(g)
        return ga, None if gb is None else gb * 0.5


def test_passes_for_correct_gradients(np_rng):
    x = Tensor(np_rng.standard_normal((3, 4)), requires_grad=True)
    w = Tensor(np_rng.standard_normal((4, 2)), requires_grad=True)
    assert gradcheck(lambda a, b: (a @ b).tanh().sigmoid(), [x, w]) is True
    assert gradcheck(lambda a: a.exp(), x) is True  # a single Tensor is accepted as inputs


def test_fails_for_a_wrong_vjp_applied_through_apply(np_rng):
    x = Tensor(np_rng.uniform(0.5, 1.5, (2, 3)), requires_grad=True, name="h")
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a: _apply(WrongTanh, a), [x])
    msg = str(info.value)
    assert "input 0 (h) of shape (2, 3)" in msg
    assert "worst at index" in msg and "analytic" in msg and "numeric" in msg
    assert isinstance(info.value, AssertionError)
    # The reported values are the real ones at the reported index.
    m = re.search(r"worst at index \(([^)]*)\): analytic (\S+), numeric (\S+) ", msg)
    assert m, msg
    idx = tuple(int(i) for i in m.group(1).split(","))
    analytic, numeric = float(m.group(2)), float(m.group(3))
    y = np.tanh(x.data[idx])
    # Both are d(v . f)/dx for gradcheck's random cotangent v: their ratio is (1 - y) / (1 - y^2).
    assert analytic / numeric == pytest.approx(1 / (1 + y), rel=1e-5)


def test_names_the_input_whose_gradient_is_wrong(np_rng):
    a = Tensor(np_rng.standard_normal(3), requires_grad=True, name="a")
    b = Tensor(np_rng.standard_normal(3), requires_grad=True, name="b")
    with pytest.raises(GradcheckError, match=r"input 1 \(b\) of shape \(3,\)"):
        gradcheck(lambda x, y: _apply(HalfGradMul, x, y), [a, b])
    # Only the first input marked: the wrong VJP of the second is not checked.
    assert gradcheck(lambda x, y: _apply(HalfGradMul, x, y), [a, Tensor(b.data)])


def test_fails_for_a_monkeypatched_backward(monkeypatch, np_rng):
    x = Tensor(np_rng.standard_normal((2, 2)), requires_grad=True)
    assert gradcheck(lambda a: a * a, [x])
    monkeypatch.setattr(ops.Mul, "backward", lambda self, g: (g * self.saved[1], None))
    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(lambda a: a * a, [x])


def test_works_in_float64_whatever_the_input_dtype(np_rng):
    seen = []

    def fn(a):
        seen.append(a.dtype)
        return (a * 0.1).sigmoid()

    x32 = Tensor(np_rng.standard_normal(4).astype(np.float32), requires_grad=True)
    assert gradcheck(fn, [x32])
    assert set(seen) == {np.dtype(np.float64)}
    assert x32.dtype == np.float32 and x32.grad is None  # the caller's tensor is untouched
    assert tl.get_default_dtype() == np.float32  # float64 only inside gradcheck


def test_multiple_outputs_and_pass_through_inputs(np_rng):
    x = Tensor(np_rng.standard_normal((4, 2)), requires_grad=True)
    idx = np.array([0, 3, 3])
    assert gradcheck(lambda a, i, k: (a[i] * k, a.sum(axis=0)), [x, idx, 2.5])
    # An output that does not depend on any input is fine.
    assert gradcheck(lambda a: (a * 2, Tensor(np.ones(2))), [x])


def test_unmarked_float_inputs_are_all_checked(np_rng):
    """With no input marked requires_grad, every float Tensor or array is checked."""
    a, b = np_rng.standard_normal(3), Tensor(np_rng.standard_normal(3))
    assert gradcheck(lambda x, y: x * y, [a, b])
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(lambda x, y: _apply(HalfGradMul, x, y), [a, b])


def test_tolerances_are_honoured(np_rng):
    class SlightlyOff(ops.Exp):
        def backward(self, g):
            return (g * self.saved[0] * (1 + 1e-4),)

    x = Tensor(np_rng.uniform(-1, 1, 5), requires_grad=True)
    with pytest.raises(GradcheckError):
        gradcheck(lambda a: _apply(SlightlyOff, a), [x], rtol=1e-6, atol=1e-9)
    assert gradcheck(lambda a: _apply(SlightlyOff, a), [x], rtol=1e-3, atol=1e-5)
    assert gradcheck(lambda a: a.exp(), [x], eps=1e-4, atol=1e-6, rtol=1e-6)


def test_non_finite_analytic_gradient_fails(np_rng):
    class NanGrad(ops.Neg):
        def backward(self, g):
            return (g * np.nan,)

    with pytest.raises(GradcheckError, match="nan"):
        gradcheck(lambda a: _apply(NanGrad, a), [Tensor(np.ones(2), requires_grad=True)])


def test_non_finite_numeric_gradient_fails():
    """A finite analytic gradient where the function is undefined nearby (NaN differences) must not pass."""

    class NanBelowZero(ops.Op):
        def forward(self, x):
            return np.where(x < 0, np.nan, x)

        def backward(self, g):
            return (g,)

    with np.errstate(invalid="ignore"), pytest.raises(GradcheckError, match=r"index \(0,\).*numeric nan"):
        gradcheck(lambda a: _apply(NanBelowZero, a), [Tensor(np.array([0.0, 1.0]), requires_grad=True)])


def test_zero_dim_input(np_rng):
    assert gradcheck(lambda a: a.tanh() * a, [Tensor(np.array(0.3), requires_grad=True)])
    with pytest.raises(GradcheckError, match=r"of shape \(\): .*index \(\)"):
        gradcheck(lambda a: _apply(WrongTanh, a), [Tensor(np.array(0.3), requires_grad=True)])


def test_bad_usage_raises_clear_errors():
    with pytest.raises(ValueError, match="no float input"):
        gradcheck(lambda i: Tensor(np.ones(2)), [np.array([1, 2])])
    with pytest.raises(TypeError, match="must return a Tensor"):
        gradcheck(lambda a: a.data, [Tensor(np.ones(2), requires_grad=True)])
