"""Tests for the hand-written numpy LSTM baseline in tools/numpy_lstm_baseline.py."""

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "tools" / "numpy_lstm_baseline.py"
_SPEC = importlib.util.spec_from_file_location("numpy_lstm_baseline", _PATH)
nb = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("numpy_lstm_baseline", nb)
_SPEC.loader.exec_module(nb)


def _problem(T, B, I, H, O, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    params = nb.init_params(I, H, O, rng, dtype=dtype)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    target = rng.standard_normal((T, B, O)).astype(dtype)
    return params, x, target


def test_finite_difference_check():
    assert nb.finite_difference_check(T=3, B=2, I=3, H=4, O=2) < 1e-6


@pytest.mark.parametrize("T,B,I,H,O", [(5, 3, 4, 6, 2), (1, 1, 2, 3, 1), (7, 2, 3, 5, 4)])
def test_matches_torch_float64(T, B, I, H, O):
    torch = pytest.importorskip("torch")
    params, x, target = _problem(T, B, I, H, O, seed=T)
    loss, grads = nb.forward_backward(params, x, target)

    lstm = torch.nn.LSTM(I, H).double()
    head = torch.nn.Linear(H, O).double()
    tparams = {
        "weight_ih": lstm.weight_ih_l0,
        "weight_hh": lstm.weight_hh_l0,
        "bias_ih": lstm.bias_ih_l0,
        "bias_hh": lstm.bias_hh_l0,
        "head_w": head.weight,
        "head_b": head.bias,
    }
    with torch.no_grad():
        for name, p in tparams.items():
            p.copy_(torch.from_numpy(params[name]))
    out, _ = lstm(torch.from_numpy(x))
    tloss = torch.nn.functional.mse_loss(head(out), torch.from_numpy(target))
    tloss.backward()

    assert abs(loss - tloss.item()) <= 1e-10 * max(1.0, abs(tloss.item()))
    assert set(grads) == set(tparams)
    for name, p in tparams.items():
        assert grads[name].shape == tuple(p.shape)
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_float32_stays_float32_and_agrees_with_float64():
    params32, x32, target32 = _problem(6, 4, 5, 8, 3, dtype=np.float32)
    loss32, grads32 = nb.forward_backward(params32, x32, target32)
    params64 = {k: v.astype(np.float64) for k, v in params32.items()}
    loss64, grads64 = nb.forward_backward(params64, x32.astype(np.float64), target32.astype(np.float64))
    assert isinstance(loss32, float)
    assert abs(loss32 - loss64) < 1e-5
    for name in nb.PARAM_NAMES:
        assert grads32[name].dtype == np.float32, name
        np.testing.assert_allclose(grads32[name], grads64[name], rtol=1e-3, atol=1e-5, err_msg=name)


def test_repeated_calls_reuse_workspace_without_aliasing():
    params, x, target = _problem(4, 3, 2, 5, 2)
    loss1, grads1 = nb.forward_backward(params, x, target)
    snapshot = {k: v.copy() for k, v in grads1.items()}
    _, _ = nb.forward_backward(params, 2 * x, target)  # same shapes, different data
    loss2, grads2 = nb.forward_backward(params, x, target)
    assert loss1 == loss2
    for name in nb.PARAM_NAMES:
        np.testing.assert_array_equal(grads1[name], snapshot[name])  # earlier results untouched
        np.testing.assert_array_equal(grads2[name], snapshot[name])


def test_sigmoid_is_stable_for_large_inputs():
    z = np.array([-1000.0, -710.0, -30.0, 0.0, 30.0, 710.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = nb.sigmoid(z)
        s32 = nb.sigmoid(z.astype(np.float32))
    assert s32.dtype == np.float32
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    np.testing.assert_allclose(s[2:5], 1.0 / (1.0 + np.exp(-z[2:5])), rtol=1e-12, atol=1e-15)


def test_op_by_op_floor_computes_the_same_loss_and_gradients():
    """tools/numpy_op_by_op.py (the engine's arithmetic without the engine) agrees with the baseline."""
    spec = importlib.util.spec_from_file_location("numpy_op_by_op", _PATH.parent / "numpy_op_by_op.py")
    ob = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ob)
    for T, B, I, H, O in [(5, 3, 4, 6, 2), (1, 1, 2, 3, 1), (4, 8, 16, 128, 1)]:  # the last takes the (W @ x^T)^T path
        params, x, target = _problem(T, B, I, H, O, seed=T)
        loss, grads = nb.forward_backward(params, x, target)
        loss2, grads2 = ob.forward_backward(params, x, target)
        assert abs(loss - loss2) <= 1e-12 * max(1.0, abs(loss))
        assert set(grads2) == set(grads)
        for name in grads:
            np.testing.assert_allclose(grads2[name], grads[name], rtol=1e-9, atol=1e-12, err_msg=name)
