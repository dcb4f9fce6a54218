"""Every primitive op: gradients against central differences (gradcheck) over broadcast shape pairs and
hypothesis-drawn inputs, forward values against numpy, and values and gradients against PyTorch (float64,
atol 1e-10), including PyTorch's rules at ties and kinks.

Finite differences need smooth neighbourhoods, so gradcheck inputs keep away from kinks and ties: values on
a 0.25 grid shifted off the kink (never within 0.1 of it), positive inputs where the domain asks for it,
and distinct values for max/min. The kinks and ties themselves are checked against PyTorch's rules.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_lstm as tl
from tinygrad_lstm import Tensor, gradcheck, ops
from tinygrad_lstm.nn.functional import affine  # the door to ops.Linear

HYPO = settings(max_examples=25, deadline=None, derandomize=True)


# ------------------------------------------------------------------------------------------------ input makers


def _any(shape, rng):
    return rng.uniform(-2.0, 2.0, shape)


def _pos(shape, rng):
    return rng.uniform(0.5, 2.0, shape)


def _grid(offset: float) -> Callable:
    """Values k/4 + offset: arrays with offsets that differ by 1/8 never tie and stay >= 1/8 apart."""

    def make(shape, rng):
        return rng.integers(-8, 8, size=shape) * 0.25 + offset

    return make


_off_kink = _grid(0.125)  # never 0, never +-0.5 or +-0.3: safe for abs, relu, leaky_relu, clip
_grid_a, _grid_b = _grid(0.0625), _grid(-0.0625)


def _distinct(shape, rng):
    """All values distinct and >= 0.25 apart (no ties for max/min)."""
    n = int(np.prod(shape, dtype=int))
    return (rng.permutation(n) * 0.25 - n / 8).reshape(shape)


def _leaf(a) -> Tensor:
    return Tensor(np.array(a, dtype=np.float64), requires_grad=True)


# ------------------------------------------------------------------------------------------------ binary ops

SHAPE_PAIRS = [
    ((), ()),
    ((3,), ()),
    ((), (2, 3)),
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((2, 3), (1, 3)),
    ((2, 1), (1, 3)),
    ((2, 1), (2, 3)),
    ((4, 2, 3), (2, 3)),
    ((4, 2, 3), (2, 1)),
    ((1, 3), (4, 2, 1)),
    ((4, 1, 3), (4, 2, 1)),
]

BINARY = {
    "add": (lambda a, b: a + b, _any, _any),
    "sub": (lambda a, b: a - b, _any, _any),
    "mul": (lambda a, b: a * b, _any, _any),
    "div": (lambda a, b: a / b, _any, _pos),
    "pow": (lambda a, b: a**b, _pos, _any),
    "maximum": (tl.maximum, _grid_a, _grid_b),
    "minimum": (tl.minimum, _grid_a, _grid_b),
}


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_gradcheck(name, shapes, np_rng):
    fn, make_a, make_b = BINARY[name]
    a, b = _leaf(make_a(shapes[0], np_rng)), _leaf(make_b(shapes[1], np_rng))
    out = fn(a, b)
    assert out.shape == np.broadcast_shapes(*shapes)
    assert gradcheck(fn, [a, b])


NUMPY_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "pow": np.power,
    "maximum": np.maximum,
    "minimum": np.minimum,
}


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_values_match_numpy(name, np_rng):
    fn, make_a, make_b = BINARY[name]
    a, b = make_a((4, 2, 3), np_rng), make_b((2, 1), np_rng)
    np.testing.assert_allclose(fn(_leaf(a), _leaf(b)).data, NUMPY_BINARY[name](a, b), rtol=1e-15)


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
def test_where_gradcheck(shapes, np_rng):
    cond = np_rng.random(np.broadcast_shapes(*shapes)) > 0.5
    a, b = _leaf(_any(shapes[0], np_rng)), _leaf(_any(shapes[1], np_rng))
    assert gradcheck(lambda x, y: tl.where(cond, x, y), [a, b])
    np.testing.assert_array_equal(tl.where(cond, a, b).data, np.where(cond, a.data, b.data))


def test_where_broadcasts_the_condition(np_rng):
    cond = Tensor(np.array([True, False, True]))
    a, b = _leaf(_any((2, 3), np_rng)), _leaf(_any((2, 1), np_rng))
    assert gradcheck(lambda x, y: tl.where(cond, x, y), [a, b])
    out = tl.where(cond, a, 0.0)
    assert out.dtype == np.float64 and out.requires_grad
    assert not cond.requires_grad


SCALAR_MIXES = [
    ("t + s", lambda t, s: t + s),
    ("s + t", lambda t, s: s + t),
    ("t - s", lambda t, s: t - s),
    ("s - t", lambda t, s: s - t),
    ("t * s", lambda t, s: t * s),
    ("s * t", lambda t, s: s * t),
    ("t / s", lambda t, s: t / s),
    ("s / t", lambda t, s: s / t),
    ("t ** s", lambda t, s: t**s),
    ("s ** t", lambda t, s: s**t),
    ("maximum(s, t)", lambda t, s: tl.maximum(s, t)),
    ("minimum(t, s)", lambda t, s: tl.minimum(t, s)),
    ("where(c, s, t)", lambda t, s: tl.where(np.array([True, False, True]), s, t)),
]


@pytest.mark.parametrize("other", ["python", "ndarray"])
@pytest.mark.parametrize("expr", SCALAR_MIXES, ids=[e[0] for e in SCALAR_MIXES])
def test_python_scalars_and_arrays_mix_in_on_either_side(expr, other, np_rng):
    _, fn = expr
    x = _pos((2, 3), np_rng)
    s = 1.7 if other == "python" else np.array([1.7, 0.9, 1.3])
    out = fn(_leaf(x), s)
    assert isinstance(out, Tensor) and out.requires_grad
    # The same expression on plain arrays gives the values.
    ref = fn(x, s) if "maximum" not in expr[0] and "minimum" not in expr[0] and "where" not in expr[0] else None
    if ref is not None:
        np.testing.assert_allclose(out.data, ref, rtol=1e-15)
    assert gradcheck(lambda t: fn(t, s), [_leaf(x)])


def test_matmul_with_ndarray_on_either_side(np_rng):
    a, w = np_rng.standard_normal((2, 3)), np_rng.standard_normal((3, 4))
    np.testing.assert_allclose((a @ _leaf(w)).data, a @ w)
    np.testing.assert_allclose((_leaf(a) @ w).data, a @ w)
    assert gradcheck(lambda t: a @ t, [_leaf(w)])
    assert gradcheck(lambda t: t @ w, [_leaf(a)])


# ------------------------------------------------------------------------------------------------ matmul

MATMUL_SHAPES = [
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3, 4)),
    ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)),
    ((5, 2, 3), (5, 3, 4)),
    ((5, 1, 2, 3), (4, 3, 2)),
    ((1, 2, 3), (5, 3, 4)),
    ((3,), (5, 3, 4)),
    ((5, 2, 3), (3,)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_gradcheck(shapes, np_rng):
    a, b = _leaf(_any(shapes[0], np_rng)), _leaf(_any(shapes[1], np_rng))
    out = a @ b
    np.testing.assert_allclose(out.data, a.data @ b.data, rtol=1e-14)
    assert gradcheck(lambda x, y: x.matmul(y), [a, b])


@pytest.mark.parametrize("shapes", [((2, 3), (3, 4)), ((5, 2, 3), (3, 4)), ((3,), (3,))], ids=str)
def test_matmul_gradient_for_one_side_only(shapes, np_rng):
    """The VJP skips an input that needs no gradient; the other one must still be right."""
    a = Tensor(_any(shapes[0], np_rng))
    b = _leaf(_any(shapes[1], np_rng))
    (a @ b).sum().backward()
    assert a.grad is None
    assert gradcheck(lambda y: a @ y, [b])


# ------------------------------------------------------------------------------------------------ linear

LINEAR_SHAPES = [(3,), (2, 3), (5, 2, 3), (1, 3), (4, 1, 2, 3)]  # x's shape; weight (4, 3), bias (4,)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", LINEAR_SHAPES, ids=str)
def test_linear_gradcheck(shape, with_bias, np_rng):
    x, w, b = _leaf(_any(shape, np_rng)), _leaf(_any((4, 3), np_rng)), _leaf(_any((4,), np_rng))
    out = affine(x, w, b if with_bias else None)
    assert out.grad_fn.name == "Linear" and out.shape == (*shape[:-1], 4)
    np.testing.assert_allclose(out.data, x.data @ w.data.T + (b.data if with_bias else 0), rtol=1e-14)
    if with_bias:
        assert gradcheck(lambda x, w, b: affine(x, w, b), [x, w, b])
    else:
        assert gradcheck(lambda x, w: affine(x, w), [x, w])


# x's shape, the addend's: an addend of the output's shape (a recurrent step's input projection) or one that
# broadcasts to it (its gradient is summed over the broadcast axes, in the engine's one place for that).
LINEAR_ADDENDS = [
    ((2, 3), (2, 4)),
    ((5, 2, 3), (5, 2, 4)),
    ((5, 2, 3), (2, 4)),
    ((5, 2, 3), (5, 1, 4)),
    ((2, 3), (1, 1)),
]


@pytest.mark.parametrize(("xs", "bs"), LINEAR_ADDENDS, ids=str)
def test_linear_addend_gradcheck(xs, bs, np_rng):
    x, w, b = _leaf(_any(xs, np_rng)), _leaf(_any((4, 3), np_rng)), _leaf(_any(bs, np_rng))
    out = affine(x, w, b)
    assert out.grad_fn.name == "Linear" and out.shape == (*xs[:-1], 4)
    np.testing.assert_allclose(out.data, x.data @ w.data.T + b.data, rtol=1e-14)
    assert gradcheck(lambda x, w, b: affine(x, w, b), [x, w, b])


@pytest.mark.parametrize("which", [0, 1, 2])
def test_linear_gradient_for_some_inputs_only(which, np_rng):
    """Each input's VJP is skipped when it needs no gradient; the others must still be right."""
    arrays = [_any((5, 2, 3), np_rng), _any((4, 3), np_rng), _any((4,), np_rng)]
    ts = [Tensor(a, requires_grad=(i != which)) for i, a in enumerate(arrays)]
    affine(*ts).sum().backward()
    assert ts[which].grad is None
    free = [i for i in range(3) if i != which]

    def f(*args):
        full = list(ts)
        for i, a in zip(free, args):
            full[i] = a
        return affine(*full)

    assert gradcheck(f, [ts[i] for i in free])


@pytest.mark.parametrize("rows", [2, 32, 64, 65])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_few_rows_by_a_big_weight_takes_the_transposed_product_and_gives_the_same(rows, with_bias, np_rng):
    """Up to 64 rows times a weight of >= 65536 entries runs as (W @ x^T)^T: same values, C order, same VJPs."""
    x = Tensor(_any((rows, 128), np_rng), requires_grad=True)
    w = Tensor(_any((512, 128), np_rng), requires_grad=True)
    b = Tensor(_any((512,), np_rng), requires_grad=True) if with_bias else None
    out = affine(x, w, b)
    ref = x.data @ w.data.T + (b.data if with_bias else 0)
    np.testing.assert_allclose(out.data, ref, rtol=1e-12, atol=1e-12)
    assert out.data.flags.c_contiguous and out.dtype == np.float64
    g = _any(out.shape, np_rng)
    out.backward(g)
    np.testing.assert_allclose(x.grad, g @ w.data, rtol=1e-12)
    np.testing.assert_allclose(w.grad, g.T @ x.data, rtol=1e-12)
    if with_bias:
        np.testing.assert_allclose(b.grad, g.sum(axis=0), rtol=1e-12)
    x32 = Tensor(x.data.astype(np.float32))
    assert affine(x32, Tensor(w.data.astype(np.float32)), Tensor(np.ones(512, np.float64))).dtype == np.float64


def test_linear_keeps_float32_and_promotes_like_numpy(np_rng):
    x = Tensor(_any((2, 3), np_rng).astype(np.float32))
    w = Tensor(_any((4, 3), np_rng).astype(np.float32), requires_grad=True)
    assert affine(x, w, Tensor(np.ones(4, np.float32))).dtype == np.float32
    assert affine(x, w, Tensor(np.ones(4, np.float64))).dtype == np.float64  # as x @ w.T + b would be


@pytest.mark.parametrize(
    ("xs", "ws", "bs", "match"),
    [
        ((2, 5), (4, 3), None, r"Linear: need input \(\.\.\., in\) and weight \(out, in\), got \(2, 5\) and \(4, 3\)"),
        ((), (4, 3), None, r"Linear: need input.*got \(\) and \(4, 3\)"),
        ((2, 3), (3,), None, r"Linear: need input.*got \(2, 3\) and \(3,\)"),
        ((2, 3), (4, 3), (3,), r"Linear: bias of shape \(3,\) does not broadcast to the output's \(2, 4\)"),
        ((2, 3), (4, 3), (3, 4), r"Linear: bias of shape \(3, 4\) does not broadcast to the output's \(2, 4\)"),
    ],
)
def test_linear_shape_errors_name_the_op_and_shapes(xs, ws, bs, match):
    args = [Tensor(np.ones(xs)), Tensor(np.ones(ws), requires_grad=True)] + ([Tensor(np.ones(bs))] if bs else [])
    with pytest.raises(ValueError, match=match):
        affine(*args)


# ------------------------------------------------------------------------------------------------ unary ops

UNARY_SHAPES = [(), (3,), (2, 3), (4, 2, 3)]

UNARY = {
    "neg": (lambda x: -x, _any, 0),
    "exp": (Tensor.exp, _any, 0),
    "log": (Tensor.log, _pos, 0),
    "sqrt": (Tensor.sqrt, _pos, 0),
    "abs": (Tensor.abs, _off_kink, 0),
    "tanh": (Tensor.tanh, _any, 0),
    "sigmoid": (Tensor.sigmoid, _any, 0),
    "relu": (Tensor.relu, _off_kink, 0),
    "leaky_relu": (lambda x: x.leaky_relu(0.1), _off_kink, 0),
    "pow 2": (lambda x: x**2, _any, 0),
    "pow 3": (lambda x: x**3, _any, 0),
    "pow 0.5": (lambda x: x**0.5, _pos, 0),
    "pow -1.5": (lambda x: x**-1.5, _pos, 0),
    "pow 0": (lambda x: x**0, _any, 0),
    "clip": (lambda x: x.clip(-0.5, 0.5), _off_kink, 0),
    "clip lo": (lambda x: x.clip(-0.3, None), _off_kink, 0),
    "clip hi": (lambda x: x.clip(None, 0.3), _off_kink, 0),
    "softmax": (Tensor.softmax, _any, 1),
    "softmax axis 0": (lambda x: x.softmax(axis=0), _any, 1),
    "log_softmax": (Tensor.log_softmax, _any, 1),
    "log_softmax axis 0": (lambda x: x.log_softmax(axis=0), _any, 1),
    "logsumexp": (Tensor.logsumexp, _any, 0),
    "logsumexp axis -1 keepdims": (lambda x: x.logsumexp(axis=-1, keepdims=True), _any, 1),
    "logsumexp axis (0,1)": (lambda x: x.logsumexp(axis=(0, 1)), _any, 2),
}

NUMPY_UNARY = {
    "neg": np.negative,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "relu": lambda x: np.maximum(x, 0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.1 * x),
    "pow 2": lambda x: x**2,
    "pow 3": lambda x: x**3,
    "pow 0.5": np.sqrt,
    "pow -1.5": lambda x: x**-1.5,
    "pow 0": np.ones_like,
    "clip": lambda x: np.clip(x, -0.5, 0.5),
    "clip lo": lambda x: np.maximum(x, -0.3),
    "clip hi": lambda x: np.minimum(x, 0.3),
    "softmax": lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True),
    "softmax axis 0": lambda x: np.exp(x) / np.exp(x).sum(0, keepdims=True),
    "log_softmax": lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True)),
    "log_softmax axis 0": lambda x: x - np.log(np.exp(x).sum(0, keepdims=True)),
    "logsumexp": lambda x: np.log(np.exp(x).sum()),
    "logsumexp axis -1 keepdims": lambda x: np.log(np.exp(x).sum(-1, keepdims=True)),
    "logsumexp axis (0,1)": lambda x: np.log(np.exp(x).sum((0, 1))),
}


@pytest.mark.parametrize("name, shape", [(n, s) for n in UNARY for s in UNARY_SHAPES if len(s) >= UNARY[n][2]], ids=str)
def test_unary_gradcheck_and_values(name, shape, np_rng):
    fn, make, _ = UNARY[name]
    x = _leaf(make(shape, np_rng))
    out = fn(x)
    np.testing.assert_allclose(out.data, NUMPY_UNARY[name](x.data), rtol=1e-13, atol=1e-15)
    assert gradcheck(fn, [x])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_are_stable_for_huge_inputs(dtype):
    x = np.array([-1e4, -1000.0, -710.0, -100.0, -30.0, 0.0, 30.0, 100.0, 710.0, 1000.0, 1e4], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # not even as a warning
        for op in (Tensor.sigmoid, Tensor.tanh):
            t = Tensor(x, requires_grad=True)
            y = op(t)
            y.backward(np.ones_like(x))
            assert y.dtype == dtype and t.grad.dtype == dtype
            assert np.isfinite(y.data).all() and np.isfinite(t.grad).all()
            assert (t.grad >= 0).all()
    s = Tensor(x).sigmoid().data
    assert s[0] == pytest.approx(0.0, abs=1e-37) and s[-1] == 1.0 and s[5] == 0.5
    # Far below the overflow point the relative accuracy is intact.
    assert Tensor(np.array([-30.0, -80.0], dtype)).sigmoid().data == pytest.approx(
        np.exp([-30.0, -80.0]) / (1 + np.exp([-30.0, -80.0])), rel=1e-5
    )
    np.testing.assert_array_equal(Tensor(x).tanh().data, np.tanh(x))


def test_sigmoid_and_tanh_are_single_nodes():
    x = Tensor(np.ones(3), requires_grad=True)
    for y, name in ((x.sigmoid(), "Sigmoid"), (x.tanh(), "Tanh")):
        assert y.grad_fn.name == name
        assert all(p is x for p in y.grad_fn.parents)


def test_softmax_family_is_stable_for_huge_inputs():
    x = np.array([[1000.0, 1000.0, -1000.0], [-1e4, 0.0, 1e4]])
    with np.errstate(over="raise", invalid="raise"):
        np.testing.assert_allclose(Tensor(x).softmax().data, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
        np.testing.assert_allclose(Tensor(x).logsumexp(axis=1).data, [1000 + np.log(2), 1e4])
        ls = Tensor(x).log_softmax().data
    np.testing.assert_allclose(ls[0, :2], [-np.log(2)] * 2)
    assert ls[1, 2] == 0.0


# ------------------------------------------------------------------------------------------------ reductions

REDUCE_CASES = [
    ((), None),
    ((3,), None),
    ((3,), 0),
    ((2, 3), None),
    ((2, 3), 0),
    ((2, 3), -1),
    ((2, 3), (0, 1)),
    ((4, 2, 3), 1),
    ((4, 2, 3), (0, 2)),
    ((4, 2, 3), (-1, 0)),
]

REDUCE = {
    "sum": (Tensor.sum, np.sum),
    "mean": (Tensor.mean, np.mean),
    "max": (Tensor.max, np.max),
    "min": (Tensor.min, np.min),
}


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("case", REDUCE_CASES, ids=str)
@pytest.mark.parametrize("name", list(REDUCE))
def test_reduction_gradcheck_and_values(name, case, keepdims, np_rng):
    shape, axis = case
    ours, ref = REDUCE[name]
    x = _leaf(_distinct(shape, np_rng))

    def fn(t):
        return ours(t, axis=axis, keepdims=keepdims)

    out = fn(x)
    expected = ref(x.data, axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-15)
    assert gradcheck(fn, [x])


# ------------------------------------------------------------------------------------------------ movement

MOVEMENT = [
    ("reshape (3,2)", (2, 3), lambda x: x.reshape(3, 2), lambda a: a.reshape(3, 2)),
    ("reshape tuple -1", (2, 3), lambda x: x.reshape((-1,)), lambda a: a.reshape(-1)),
    ("reshape add dims", (2, 3), lambda x: x.reshape(1, 2, 3, 1), lambda a: a.reshape(1, 2, 3, 1)),
    ("reshape 3-d", (4, 2, 3), lambda x: x.reshape(4, 6), lambda a: a.reshape(4, 6)),
    ("reshape 0-d", (), lambda x: x.reshape(1, 1), lambda a: a.reshape(1, 1)),
    (".T 2-d", (2, 3), lambda x: x.T, lambda a: a.T),
    (".T 3-d", (4, 2, 3), lambda x: x.T, lambda a: a.T),
    ("transpose axes", (4, 2, 3), lambda x: x.transpose(2, 0, 1), lambda a: a.transpose(2, 0, 1)),
    ("transpose negative", (4, 2, 3), lambda x: x.transpose(0, -1, 1), lambda a: a.transpose(0, 2, 1)),
    ("permute", (4, 2, 3), lambda x: x.permute(1, 2, 0), lambda a: a.transpose(1, 2, 0)),
    ("expand", (1, 3), lambda x: x.expand(2, 3), lambda a: np.broadcast_to(a, (2, 3))),
    ("expand new dims", (3,), lambda x: x.expand(4, 2, 3), lambda a: np.broadcast_to(a, (4, 2, 3))),
    ("expand -1", (2, 1), lambda x: x.expand(-1, 4), lambda a: np.broadcast_to(a, (2, 4))),
    ("expand 0-d", (), lambda x: x.expand(2, 2), lambda a: np.broadcast_to(a, (2, 2))),
    ("broadcast_to", (2, 1), lambda x: x.broadcast_to((3, 2, 2)), lambda a: np.broadcast_to(a, (3, 2, 2))),
    ("getitem int", (4, 2, 3), lambda x: x[1], lambda a: a[1]),
    ("getitem negative int", (4, 2, 3), lambda x: x[-1, 0], lambda a: a[-1, 0]),
    ("getitem slice", (4, 2, 3), lambda x: x[1:3], lambda a: a[1:3]),
    ("getitem step", (4, 2, 3), lambda x: x[::-2, :, 1:], lambda a: a[::-2, :, 1:]),
    ("getitem ellipsis", (4, 2, 3), lambda x: x[..., 1], lambda a: a[..., 1]),
    ("getitem None", (4, 2, 3), lambda x: x[None, :, 0], lambda a: a[None, :, 0]),
    ("getitem int list repeated", (4, 2, 3), lambda x: x[[0, 0, 2, 0]], lambda a: a[[0, 0, 2, 0]]),
    (
        "getitem int array 2-d",
        (4, 2, 3),
        lambda x: x[np.array([[0, 1], [1, 3]])],
        lambda a: a[np.array([[0, 1], [1, 3]])],
    ),
    ("getitem mixed advanced", (4, 2, 3), lambda x: x[[0, 2, 2], :, [1, 0, 1]], lambda a: a[[0, 2, 2], :, [1, 0, 1]]),
    ("getitem int + list + slice", (4, 2, 3), lambda x: x[1, [0, 1, 1], 1:], lambda a: a[1, [0, 1, 1], 1:]),
    (
        "getitem Tensor index",
        (4, 2, 3),
        lambda x: x[Tensor(np.array([3, 3, 0]))],
        lambda a: a[np.array([3, 3, 0])],
    ),
    (
        "getitem bool mask",
        (2, 3),
        lambda x: x[np.array([[True, False, True], [False, True, True]])],
        lambda a: a[np.array([[True, False, True], [False, True, True]])],
    ),
]


@pytest.mark.parametrize("case", MOVEMENT, ids=[c[0] for c in MOVEMENT])
def test_movement_gradcheck_and_values(case, np_rng):
    _, shape, fn, ref = case
    x = _leaf(_any(shape, np_rng))
    out = fn(x)
    np.testing.assert_array_equal(out.data, ref(x.data))
    assert gradcheck(fn, [x])


def test_getitem_repeated_indices_add_up():
    x = _leaf(np.arange(4.0))
    x[[0, 0, 2, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 1.0, 0.0])


def test_slices_of_one_tensor_add_up(np_rng):
    """Many slices of one tensor (an unrolled sequence) share one gradient buffer; every slice counts."""
    x = _leaf(_any((6, 2), np_rng))
    total = x[0] * 1.0
    for t in range(1, 6):
        total = total + x[t] * (t + 1.0) + x[t - 1 : t + 1].sum(axis=0)
    total.sum().backward()
    expected = np.zeros((6, 2))
    expected[0] = 1.0
    for t in range(1, 6):
        expected[t] += t + 1.0
        expected[t - 1 : t + 1] += 1.0
    np.testing.assert_allclose(x.grad, expected)
    assert gradcheck(lambda y: sum((y[t] * y[t - 1] for t in range(1, 6)), y[0]), [_leaf(x.data)])


CAT_CASES = [
    ([(2, 3), (4, 3)], 0),
    ([(2, 3), (2, 1), (2, 2)], 1),
    ([(2, 3), (2, 1)], -1),
    ([(4, 2, 3), (4, 1, 3)], 1),
    ([(3,)], 0),
]


@pytest.mark.parametrize("case", CAT_CASES, ids=str)
def test_cat_gradcheck(case, np_rng):
    shapes, axis = case
    xs = [_leaf(_any(s, np_rng)) for s in shapes]
    out = tl.cat(xs, axis=axis)
    np.testing.assert_array_equal(out.data, np.concatenate([x.data for x in xs], axis=axis))
    assert gradcheck(lambda *ts: tl.cat(list(ts), axis=axis), xs)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_stack_gradcheck(axis, np_rng):
    xs = [_leaf(_any((2, 3), np_rng)) for _ in range(3)]
    out = tl.stack(xs, axis=axis)
    np.testing.assert_array_equal(out.data, np.stack([x.data for x in xs], axis=axis))
    assert gradcheck(lambda *ts: tl.stack(ts, axis=axis), xs)


def test_cat_and_stack_take_python_numbers_in_the_tensors_dtype():
    x = Tensor(np.ones(2, np.float32), requires_grad=True)
    assert tl.stack([x, x * 2]).dtype == np.float32
    assert tl.cat([x, Tensor(np.zeros(1, np.float32))]).shape == (3,)


@pytest.mark.parametrize(
    "split, sizes",
    [
        (lambda x: x.split(2), [2, 2, 1]),
        (lambda x: x.split([1, 4]), [1, 4]),
        (lambda x: x.split(5), [5]),
        (lambda x: x.split([0, 5]), [0, 5]),
        (lambda x: x.chunk(3), [2, 2, 1]),
        (lambda x: x.chunk(5), [1, 1, 1, 1, 1]),
        (lambda x: x.chunk(4), [2, 2, 1]),
    ],
)
def test_split_and_chunk(split, sizes, np_rng):
    x = _leaf(_any((5, 2), np_rng))
    pieces = split(x)
    assert [p.shape[0] for p in pieces] == sizes
    np.testing.assert_array_equal(np.concatenate([p.data for p in pieces]), x.data)
    assert gradcheck(lambda t: tuple(split(t)), [x])


def test_split_along_another_axis(np_rng):
    x = _leaf(_any((2, 7), np_rng))
    pieces = x.split(3, axis=-1)
    assert [p.shape for p in pieces] == [(2, 3), (2, 3), (2, 1)]
    assert [p.shape for p in x.chunk(2, axis=1)] == [(2, 4), (2, 3)]
    assert gradcheck(lambda t: tuple(t.chunk(3, axis=1)), [x])


# ------------------------------------------------------------------------------------------------ comparisons

COMPARISONS = [
    ("<", lambda a, b: a < b, np.less),
    ("<=", lambda a, b: a <= b, np.less_equal),
    (">", lambda a, b: a > b, np.greater),
    (">=", lambda a, b: a >= b, np.greater_equal),
    ("==", lambda a, b: a == b, np.equal),
    ("!=", lambda a, b: a != b, np.not_equal),
]


@pytest.mark.parametrize("cmp", COMPARISONS, ids=[c[0] for c in COMPARISONS])
def test_comparisons_give_bool_tensors_without_gradient(cmp):
    _, fn, ref = cmp
    a = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    b = np.array([2.0, 2.0, 2.0])
    ta, tb = _leaf(a), _leaf(b)
    for left, right, ra, rb in [(ta, tb, a, b), (ta, 2.0, a, 2.0), (2.0, ta, 2.0, a), (b, ta, b, a), (ta, b, a, b)]:
        out = fn(left, right)
        assert isinstance(out, Tensor)
        assert out.dtype == np.bool_ and not out.requires_grad and out.grad_fn is None
        np.testing.assert_array_equal(out.data, ref(ra, rb))


# ------------------------------------------------------------------------------------------------ hypothesis

_finite = {"allow_nan": False, "allow_infinity": False}


def _grid_elements(offset: float):
    return st.integers(-12, 12).map(lambda k: k * 0.25 + offset)


@HYPO
@given(
    data=st.data(),
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
    name=st.sampled_from(sorted(BINARY)),
)
def test_hypothesis_binary_broadcast(data, shapes, name):
    fn = BINARY[name][0]
    if name in ("maximum", "minimum"):
        ea, eb = _grid_elements(0.0625), _grid_elements(-0.0625)
    elif name == "pow":
        ea, eb = st.floats(0.3, 2.0, **_finite), st.floats(-2.0, 2.0, **_finite)
    elif name == "div":
        ea, eb = st.floats(-3.0, 3.0, **_finite), st.floats(0.3, 3.0, **_finite)
    else:
        ea = eb = st.floats(-3.0, 3.0, **_finite)
    sa, sb = shapes.input_shapes
    a = data.draw(hnp.arrays(np.float64, sa, elements=ea))
    b = data.draw(hnp.arrays(np.float64, sb, elements=eb))
    out = fn(_leaf(a), _leaf(b))
    assert out.shape == shapes.result_shape
    np.testing.assert_allclose(out.data, NUMPY_BINARY[name](a, b), rtol=1e-14)
    assert gradcheck(fn, [_leaf(a), _leaf(b)])


_UNARY_ELEMENTS = {
    "neg": st.floats(-3.0, 3.0, **_finite),
    "exp": st.floats(-3.0, 3.0, **_finite),
    "log": st.floats(0.2, 5.0, **_finite),
    "sqrt": st.floats(0.2, 5.0, **_finite),
    "abs": _grid_elements(0.125),
    "tanh": st.floats(-4.0, 4.0, **_finite),
    "sigmoid": st.floats(-6.0, 6.0, **_finite),
    "relu": _grid_elements(0.125),
    "leaky_relu": _grid_elements(0.125),
    "pow 3": st.floats(-2.0, 2.0, **_finite),
    "pow -1.5": st.floats(0.3, 3.0, **_finite),
    "clip": _grid_elements(0.125),
}


@HYPO
@given(
    data=st.data(),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
    name=st.sampled_from(sorted(_UNARY_ELEMENTS)),
)
def test_hypothesis_elementwise_unary(data, shape, name):
    x = data.draw(hnp.arrays(np.float64, shape, elements=_UNARY_ELEMENTS[name]))
    fn = UNARY[name][0]
    np.testing.assert_allclose(fn(_leaf(x)).data, NUMPY_UNARY[name](x), rtol=1e-13, atol=1e-15)
    assert gradcheck(fn, [_leaf(x)])


@st.composite
def _reduce_case(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
    axis = draw(st.none() | hnp.valid_tuple_axes(len(shape), min_size=1)) if shape else None
    if axis is not None and len(axis) == 1 and draw(st.booleans()):
        axis = axis[0] - len(shape) * draw(st.integers(0, 1))  # a plain int, maybe negative
    keepdims = draw(st.booleans())
    # Distinct values on a grid: max/min never tie, so finite differences see a smooth function.
    x = draw(hnp.arrays(np.float64, shape, elements=st.integers(-60, 60).map(lambda k: k * 0.25), unique=True))
    return x, axis, keepdims


@HYPO
@given(case=_reduce_case(), name=st.sampled_from(["sum", "mean", "max", "min", "logsumexp"]))
def test_hypothesis_reductions(case, name):
    x, axis, keepdims = case
    if name in ("max", "min") and x.size == 0:
        return
    if name == "logsumexp":
        ours = Tensor.logsumexp

        def ref(a, axis, keepdims):
            return np.log(np.exp(a).sum(axis=axis, keepdims=keepdims))
    else:
        ours, ref = REDUCE[name]

    def fn(t):
        return ours(t, axis=axis, keepdims=keepdims)

    out = fn(_leaf(x))
    with np.errstate(invalid="ignore", divide="ignore"):  # the mean or logsumexp of an empty axis
        expected = ref(x, axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-13)
    if x.size:
        assert gradcheck(fn, [_leaf(x)])


# ------------------------------------------------------------------------------------------------ PyTorch


def _torch_compare(ours: Callable, theirs: Callable, arrays: list, rng, atol: float = 1e-10) -> None:
    """Values and gradients (for a random cotangent) of ours and torch's on the same float64 inputs."""
    torch = pytest.importorskip("torch")
    arrays = [np.asarray(a) for a in arrays]
    diff = [a.dtype.kind == "f" for a in arrays]
    ts = [Tensor(a.copy(), requires_grad=d) for a, d in zip(arrays, diff)]
    tt = [torch.tensor(a, requires_grad=d) for a, d in zip(arrays, diff)]
    out, tout = ours(*ts), theirs(*tt)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    touts = list(tout) if isinstance(tout, (list, tuple)) else [tout]
    assert len(outs) == len(touts)
    for o, to in zip(outs, touts):
        assert o.shape == tuple(to.shape)
        np.testing.assert_allclose(o.data, to.detach().numpy(), atol=atol, rtol=0)
    vs = [rng.standard_normal(o.shape) for o in outs]
    total = sum(((o * v).sum() for o, v in zip(outs, vs)), Tensor(0.0, dtype=np.float64))
    total.backward()
    sum((to * torch.tensor(v)).sum() for to, v in zip(touts, vs)).backward()
    for t, tx, d in zip(ts, tt, diff):
        if d:
            assert t.grad is not None
            np.testing.assert_allclose(t.grad, tx.grad.numpy(), atol=atol, rtol=0)


def _F():
    return pytest.importorskip("torch").nn.functional


@pytest.mark.parametrize("shape", [(3,), (2, 3), (5, 2, 3)], ids=str)
def test_linear_matches_torch(shape, np_rng):
    arrays = [_any(shape, np_rng), _any((4, 3), np_rng), _any((4,), np_rng)]
    _torch_compare(affine, _F().linear, arrays, np_rng)
    _torch_compare(lambda x, w: affine(x, w), _F().linear, arrays[:2], np_rng)


@pytest.mark.parametrize(("xs", "bs"), LINEAR_ADDENDS[:3], ids=str)
def test_linear_addend_matches_torch_addmm(xs, bs, np_rng):
    torch = pytest.importorskip("torch")
    arrays = [_any(xs, np_rng), _any((4, 3), np_rng), _any(bs, np_rng)]
    _torch_compare(affine, lambda x, w, b: b + torch.matmul(x, w.T), arrays, np_rng)


TORCH_BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
    "maximum": lambda a, b: pytest.importorskip("torch").maximum(a, b),
    "minimum": lambda a, b: pytest.importorskip("torch").minimum(a, b),
}


@pytest.mark.parametrize("shapes", [((2, 3), (3,)), ((4, 1, 3), (4, 2, 1)), ((), (2, 3))], ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_matches_torch(name, shapes, np_rng):
    _, make_a, make_b = BINARY[name]
    _torch_compare(BINARY[name][0], TORCH_BINARY[name], [make_a(shapes[0], np_rng), make_b(shapes[1], np_rng)], np_rng)


def test_maximum_minimum_ties_split_evenly_as_torch(np_rng):
    torch = pytest.importorskip("torch")
    a = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]])
    b = np.array([1.0, 0.0, 3.0])
    _torch_compare(tl.maximum, torch.maximum, [a, b], np_rng)
    _torch_compare(tl.minimum, torch.minimum, [a, b], np_rng)
    x = _leaf([2.0])
    tl.maximum(x, x).backward(np.ones(1))
    assert x.grad[0] == 1.0  # 0.5 through each side


def test_pow_at_zero_base_and_zero_exponent_matches_torch(np_rng):
    a = np.array([0.0, 0.0, 1.5, 2.0, 0.5])
    b = np.array([2.0, 0.0, 0.0, 1.5, -1.0])
    _torch_compare(lambda x, y: x**y, lambda x, y: x**y, [a, b], np_rng)
    for p in (0, 0.0, 1, 2, 3, -1.0, 2.5):
        base = a[2:] if p not in (0, 0.0, 1, 2, 3) else a
        _torch_compare(lambda x, p=p: x**p, lambda x, p=p: x**p, [base], np_rng)


TORCH_UNARY = {
    "neg": lambda x: -x,
    "exp": lambda x: x.exp(),
    "log": lambda x: x.log(),
    "sqrt": lambda x: x.sqrt(),
    "abs": lambda x: x.abs(),
    "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(),
    "relu": lambda x: x.relu(),
    "leaky_relu": lambda x: _F().leaky_relu(x, 0.1),
    "pow 2": lambda x: x**2,
    "pow 3": lambda x: x**3,
    "pow 0.5": lambda x: x**0.5,
    "pow -1.5": lambda x: x**-1.5,
    "pow 0": lambda x: x**0,
    "clip": lambda x: x.clamp(-0.5, 0.5),
    "clip lo": lambda x: x.clamp(min=-0.3),
    "clip hi": lambda x: x.clamp(max=0.3),
    "softmax": lambda x: x.softmax(-1),
    "softmax axis 0": lambda x: x.softmax(0),
    "log_softmax": lambda x: x.log_softmax(-1),
    "log_softmax axis 0": lambda x: x.log_softmax(0),
    "logsumexp": lambda x: x.logsumexp(tuple(range(x.ndim))),
    "logsumexp axis -1 keepdims": lambda x: x.logsumexp(-1, keepdim=True),
    "logsumexp axis (0,1)": lambda x: x.logsumexp((0, 1)),
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_matches_torch(name, np_rng):
    fn, make, _ = UNARY[name]
    _torch_compare(fn, TORCH_UNARY[name], [make((4, 2, 3), np_rng)], np_rng)


KINKS = np.array([-1000.0, -2.0, -0.5, -0.3, -1e-300, 0.0, 1e-300, 0.3, 0.5, 2.0, 1000.0])


@pytest.mark.parametrize("name", ["abs", "relu", "leaky_relu", "clip", "clip lo", "clip hi", "sigmoid", "tanh"])
def test_kinks_and_extremes_match_torch(name, np_rng):
    """At x == 0 and at the clip bounds the (sub)gradient follows PyTorch; huge |x| stays finite."""
    _torch_compare(UNARY[name][0], TORCH_UNARY[name], [KINKS], np_rng)


def test_softmax_family_with_huge_inputs_matches_torch(np_rng):
    x = np.array([[1000.0, 1000.0, -1000.0], [-1e4, 0.0, 1e4], [1.0, 2.0, 3.0]])
    for name in ("softmax", "log_softmax", "logsumexp", "logsumexp axis -1 keepdims"):
        _torch_compare(UNARY[name][0], TORCH_UNARY[name], [x], np_rng)


TORCH_REDUCE = {
    "sum": lambda x, axis, keepdims: x.sum(dim=axis if axis is not None else tuple(range(x.ndim)), keepdim=keepdims),
    "mean": lambda x, axis, keepdims: x.mean(dim=axis if axis is not None else tuple(range(x.ndim)), keepdim=keepdims),
    "max": lambda x, axis, keepdims: x.amax(dim=axis if axis is not None else (), keepdim=keepdims),
    "min": lambda x, axis, keepdims: x.amin(dim=axis if axis is not None else (), keepdim=keepdims),
}


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("case", REDUCE_CASES, ids=str)
@pytest.mark.parametrize("name", list(REDUCE))
def test_reductions_match_torch(name, case, keepdims, np_rng):
    shape, axis = case
    _torch_compare(
        lambda t: REDUCE[name][0](t, axis=axis, keepdims=keepdims),
        lambda t: TORCH_REDUCE[name](t, axis, keepdims),
        [_distinct(shape, np_rng)],
        np_rng,
    )


@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)])
def test_max_min_ties_split_evenly_as_torch_amax(axis, np_rng):
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [3.0, -1.0, 3.0]])
    for name in ("max", "min"):
        _torch_compare(
            lambda t, name=name: REDUCE[name][0](t, axis=axis),
            lambda t, name=name: TORCH_REDUCE[name](t, axis, False),
            [x],
            np_rng,
        )
    t = _leaf(x)
    t.max().backward()
    np.testing.assert_allclose(t.grad, (x == 3.0) / 4)


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_matches_torch(shapes, np_rng):
    _torch_compare(lambda a, b: a @ b, lambda a, b: a @ b, [_any(shapes[0], np_rng), _any(shapes[1], np_rng)], np_rng)


def _torch_index(idx):
    torch = pytest.importorskip("torch")
    if isinstance(idx, tuple):
        return tuple(_torch_index(i) for i in idx)
    if isinstance(idx, (list, np.ndarray)):
        return torch.as_tensor(np.asarray(idx))
    return idx


TORCH_MOVEMENT = {
    "reshape (3,2)": lambda x: x.reshape(3, 2),
    "reshape 3-d": lambda x: x.reshape(4, 6),
    ".T 2-d": lambda x: x.T,
    "transpose axes": lambda x: x.permute(2, 0, 1),
    "permute": lambda x: x.permute(1, 2, 0),
    "expand": lambda x: x.expand(2, 3),
    "expand new dims": lambda x: x.expand(4, 2, 3),
    "expand -1": lambda x: x.expand(-1, 4),
    "getitem int": lambda x: x[1],
    "getitem slice": lambda x: x[1:3],
    "getitem ellipsis": lambda x: x[..., 1],
    "getitem None": lambda x: x[None, :, 0],
    "getitem int list repeated": lambda x: x[_torch_index([0, 0, 2, 0])],
    "getitem int array 2-d": lambda x: x[_torch_index(np.array([[0, 1], [1, 3]]))],
    "getitem mixed advanced": lambda x: x[_torch_index(([0, 2, 2], slice(None), [1, 0, 1]))],
    "getitem int + list + slice": lambda x: x[_torch_index((1, [0, 1, 1], slice(1, None)))],
    "getitem bool mask": lambda x: x[_torch_index(np.array([[True, False, True], [False, True, True]]))],
}


@pytest.mark.parametrize("name", list(TORCH_MOVEMENT))
def test_movement_matches_torch(name, np_rng):
    _, shape, fn, _ = next(c for c in MOVEMENT if c[0] == name)
    _torch_compare(fn, TORCH_MOVEMENT[name], [_any(shape, np_rng)], np_rng)


def test_where_cat_stack_split_chunk_match_torch(np_rng):
    torch = pytest.importorskip("torch")
    cond = np_rng.random((2, 3)) > 0.5
    a, b = _any((2, 3), np_rng), _any((2, 1), np_rng)
    _torch_compare(lambda c, x, y: tl.where(c, x, y), torch.where, [cond, a, b], np_rng)
    c = _any((2, 2), np_rng)
    _torch_compare(lambda *ts: tl.cat(ts, axis=1), lambda *ts: torch.cat(ts, dim=1), [a, b, c], np_rng)
    _torch_compare(lambda *ts: tl.stack(ts, axis=-1), lambda *ts: torch.stack(ts, dim=-1), [a, a * 2], np_rng)
    x = _any((7, 2), np_rng)
    _torch_compare(lambda t: t.split(3), lambda t: torch.split(t, 3), [x], np_rng)
    _torch_compare(lambda t: t.split([2, 5]), lambda t: torch.split(t, [2, 5]), [x], np_rng)
    for n in (1, 2, 3, 4, 6, 7):
        _torch_compare(lambda t, n=n: t.chunk(n), lambda t, n=n: torch.chunk(t, n), [x], np_rng)


@pytest.mark.parametrize("expr", SCALAR_MIXES[:10], ids=[e[0] for e in SCALAR_MIXES[:10]])
def test_scalar_mixes_match_torch(expr, np_rng):
    _, fn = expr
    _torch_compare(lambda t: fn(t, 1.7), lambda t: fn(t, 1.7), [_pos((2, 3), np_rng)], np_rng)


# One expression per op that keeps arrays for its VJP, from (3, 4) inputs a and b (positive, distinct entries).
SAVING = {
    "Mul": lambda a, b: a * b,
    "Div": lambda a, b: a / b,
    "Pow": lambda a, b: a**b,
    "Maximum": tl.maximum,
    "Minimum": tl.minimum,
    "Where": lambda a, b: tl.where(a > 0.5, a, b),
    "MatMul": lambda a, b: a @ b.T,
    "Linear": lambda a, b: affine(a, b, a[0, :3]),
    "Exp": lambda a, b: a.exp(),
    "Log": lambda a, b: a.log(),
    "Sqrt": lambda a, b: a.sqrt(),
    "Abs": lambda a, b: a.abs(),
    "Sin": lambda a, b: a.sin(),
    "Cos": lambda a, b: a.cos(),
    "Tanh": lambda a, b: a.tanh(),
    "Sigmoid": lambda a, b: a.sigmoid(),
    "Relu": lambda a, b: a.relu(),
    "LeakyRelu": lambda a, b: a.leaky_relu(0.1),
    "PowScalar": lambda a, b: a**3,
    "Clip": lambda a, b: a.clip(0.2, 0.8),
    "Max": lambda a, b: a.max(axis=1),
    "Min": lambda a, b: a.min(axis=0),
    "Softmax": lambda a, b: a.softmax(),
    "LogSoftmax": lambda a, b: a.log_softmax(),
    "LogSumExp": lambda a, b: a.logsumexp(axis=1),
}


def _op_classes(cls=ops.Op):
    for sub in cls.__subclasses__():
        yield sub
        yield from _op_classes(sub)


def test_saved_lists_the_saved_inputs_then_the_output(np_rng):
    """What the renderer relies on to show values the graph kept (a node holds no tensors): ``saved`` is the
    arrays of the inputs in ``saves``, in order, then the output when ``saves_output``."""
    savers = {c.__name__ for c in _op_classes() if c.__module__ == ops.__name__ and (c.saves or c.saves_output)}
    assert savers == set(SAVING), "a new op that saves arrays needs an expression here"
    a = _leaf(np_rng.uniform(0.1, 1.0, (3, 4)))
    b = _leaf(np_rng.uniform(0.1, 1.0, (3, 4)))
    for name, fn in SAVING.items():
        out = fn(a, b)
        node = out.grad_fn
        assert node.name == name
        args = {"Linear": [a, b, a[0, :3]], "Where": [a > 0.5, a, b], "MatMul": [a, b.T]}.get(name, [a, b])
        for k, i in enumerate(node.saves):
            np.testing.assert_array_equal(node.saved[k], args[i].data, err_msg=name)
        if node.saves_output:
            np.testing.assert_array_equal(np.reshape(node.saved[-1], out.shape), out.data, err_msg=name)
        assert len(node.saved) == len(node.saves) + node.saves_output, name
