"""Bad input raises a clear error naming the op (or function), the argument and the shapes: never a raw
numpy traceback."""

from __future__ import annotations

import numpy as np
import pytest

import tinygrad_lstm as tl
from tinygrad_lstm import Tensor


def _t(*shape) -> Tensor:
    return Tensor(np.ones(shape), requires_grad=True)


# ------------------------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize(
    "a, b, pattern",
    [
        ((2, 3), (4, 5), r"MatMul.*\(2, 3\).*\(4, 5\)"),
        ((3,), (4,), r"MatMul.*\(3,\).*\(4,\)"),
        ((2, 3), (2,), r"MatMul.*\(2, 3\).*\(2,\)"),
        ((5, 2, 3), (4, 3, 2), r"MatMul.*\(5, 2, 3\).*\(4, 3, 2\)"),
        ((), (3,), r"MatMul.*\(\).*\(3,\)"),
    ],
)
def test_matmul_shape_mismatch(a, b, pattern):
    with pytest.raises(ValueError, match=pattern):
        _t(*a) @ _t(*b)


@pytest.mark.parametrize(
    "op, name",
    [
        (lambda a, b: a + b, "Add"),
        (lambda a, b: a - b, "Sub"),
        (lambda a, b: a * b, "Mul"),
        (lambda a, b: a / b, "Div"),
        (lambda a, b: a**b, "Pow"),
        (tl.maximum, "Maximum"),
        (tl.minimum, "Minimum"),
        (lambda a, b: tl.where(np.ones((2, 3), bool), a, b), "Where"),
    ],
)
def test_broadcasting_mismatch_names_op_and_both_shapes(op, name):
    with pytest.raises(ValueError, match=rf"{name}.*\(2, 3\).*\(4,\)"):
        op(_t(2, 3), _t(4))


def test_broadcasting_mismatch_with_an_ndarray():
    with pytest.raises(ValueError, match=r"Add.*\(2, 3\).*\(4,\)"):
        _t(2, 3) + np.ones(4)
    with pytest.raises(ValueError, match=r"Mul.*\(4,\).*\(2, 3\)"):
        np.ones(4) * _t(2, 3)


def test_comparison_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        _ = _t(2, 3) < _t(4)


def test_cat_and_stack_mismatch():
    with pytest.raises(ValueError, match=r"cat.*\(2, 3\).*\(2, 4\)"):
        tl.cat([_t(2, 3), _t(2, 4)])
    with pytest.raises(ValueError, match=r"cat.*\(2, 3\).*\(3,\)"):
        tl.cat([_t(2, 3), _t(3)])
    with pytest.raises(ValueError, match=r"cat.*axis 2.*\(2, 3\)"):
        tl.cat([_t(2, 3), _t(2, 3)], axis=2)
    with pytest.raises(ValueError, match=r"cat.*\(\)"):
        tl.cat([_t(), _t()])
    with pytest.raises(ValueError, match="cat: need a non-empty list"):
        tl.cat([])
    with pytest.raises(ValueError, match=r"stack.*\(2, 3\).*\(3, 2\)"):
        tl.stack([_t(2, 3), _t(3, 2)])
    with pytest.raises(ValueError, match=r"stack: axis 4.*\(2, 3\)"):
        tl.stack([_t(2, 3), _t(2, 3)], axis=4)


def test_reshape_expand_transpose_mismatch():
    with pytest.raises(ValueError, match=r"Reshape.*\(4,\).*\(2, 3\)"):
        _t(2, 3).reshape(4)
    with pytest.raises(ValueError, match=r"Reshape"):
        _t(2, 3).reshape(-1, -1)
    with pytest.raises(TypeError, match=r"reshape: shape must be ints"):
        _t(2, 3).reshape(2.0, 3)
    with pytest.raises(ValueError, match=r"Expand.*\(2, 3\)"):
        _t(2, 3).expand(4, 3)
    with pytest.raises(ValueError, match=r"expand.*\(2, 3\).*\(3,\)"):
        _t(2, 3).expand(3)
    with pytest.raises(ValueError, match=r"transpose.*\(0, 0, 1\).*\(2, 3, 4\)"):
        _t(2, 3, 4).transpose(0, 0, 1)
    with pytest.raises(ValueError, match=r"permute"):
        _t(2, 3).permute()


def test_index_errors_name_the_op_and_shape():
    with pytest.raises(IndexError, match=r"GetItem.*\(2, 3\)"):
        _t(2, 3)[5]
    with pytest.raises(IndexError, match=r"GetItem.*\(2, 3\)"):
        _t(2, 3)[[0, 7]]


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "logsumexp", "softmax", "log_softmax"])
def test_axis_out_of_range(op):
    with pytest.raises(ValueError, match=rf"{op}: axis 2 is out of range.*\(2, 3\)"):
        getattr(_t(2, 3), op)(axis=2)
    with pytest.raises(ValueError, match=rf"{op}: axis .* out of range.*\(\)"):
        getattr(_t(), op)(axis=0)


def test_repeated_axis_and_empty_reductions():
    with pytest.raises(ValueError, match=r"sum: repeated axis"):
        _t(2, 3).sum(axis=(1, -1))
    with pytest.raises(ValueError, match=r"max: cannot reduce an empty tensor of shape \(0, 3\)"):
        Tensor(np.ones((0, 3))).max()
    with pytest.raises(ValueError, match=r"min: cannot reduce an empty tensor"):
        Tensor(np.ones((0,))).min()


def test_split_chunk_clip_item_errors():
    with pytest.raises(ValueError, match=r"split: sizes \[1, 1\] do not add up to 5.*\(5, 2\)"):
        _t(5, 2).split([1, 1])
    with pytest.raises(ValueError, match=r"split: size must be positive"):
        _t(5, 2).split(0)
    with pytest.raises(ValueError, match=r"split: axis 3 is out of range"):
        _t(5, 2).split(2, axis=3)
    with pytest.raises(ValueError, match=r"chunk: number of chunks must be positive"):
        _t(5, 2).chunk(0)
    with pytest.raises(ValueError, match=r"clip: give at least one of lo and hi"):
        _t(3).clip()
    with pytest.raises(ValueError, match=r"item: .*shape \(3,\)"):
        _t(3).item()
    with pytest.raises(ValueError, match=r"bool: .*shape \(3,\)"):
        bool(_t(3))
    with pytest.raises(TypeError, match=r"len\(\) of a 0-d tensor"):
        len(_t())


# ------------------------------------------------------------------------------------------------ backward


def test_backward_of_a_non_scalar_without_grad_names_the_shape():
    y = _t(3, 4) * 2
    with pytest.raises(RuntimeError, match=r"non-scalar output of shape \(3, 4\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"grad of shape \(4, 3\) given for a tensor of shape \(3, 4\)"):
        y.backward(np.ones((4, 3)))
    y.backward(np.ones((3, 4)))  # with a gradient of the right shape it works
    one = _t(1, 1) * 2
    one.backward()  # one element: no gradient needed


def test_backward_without_a_graph():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).sum().backward()
    x = _t(2)
    with tl.no_grad():
        y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_second_backward_through_a_released_graph():
    x = _t(3)
    y = (x.tanh() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
        y.backward()


def test_a_vjp_of_the_wrong_shape_is_caught():
    from tinygrad_lstm import ops
    from tinygrad_lstm.tensor import _apply

    class BadVJP(ops.Neg):
        def backward(self, g):
            return (np.ones(7),)

    y = _apply(BadVJP, _t(2, 3))
    with pytest.raises((RuntimeError, ValueError), match=r"\(2, 3\)"):
        y.sum().backward()


# ------------------------------------------------------------------------------------------------ dtypes


@pytest.mark.parametrize(
    "data",
    [np.array([1, 2]), np.array([True]), [1, 2], 3, np.arange(3, dtype=np.uint8)],
    ids=["int array", "bool array", "int list", "int", "uint8"],
)
def test_requires_grad_needs_floating_data(data):
    with pytest.raises(TypeError, match=r"only floating tensors can require grad, got dtype"):
        Tensor(data, requires_grad=True)


def test_requires_grad_on_int_factories_and_requires_grad_():
    with pytest.raises(TypeError, match="only floating tensors can require grad"):
        Tensor.zeros(2, dtype=np.int64, requires_grad=True)
    with pytest.raises(TypeError, match=r"requires_grad_: only floating tensors"):
        Tensor([1, 2]).requires_grad_()
    with pytest.raises(RuntimeError, match=r"requires_grad_: only leaf tensors"):
        (_t(2) * 2).requires_grad_(False)


@pytest.mark.parametrize(
    "data",
    [
        "abc",
        ["a", "b"],
        np.array(["x"]),
        np.array([1, None], dtype=object),
        [1, "a"],
        [[1, 2], [3]],
        {"a": 1},
        None,
        b"bytes",
    ],
    ids=["str", "str list", "str array", "object array", "mixed list", "ragged", "dict", "None", "bytes"],
)
def test_object_and_string_data_is_rejected(data):
    with pytest.raises(TypeError, match=r"Tensor: "):
        Tensor(data)


@pytest.mark.parametrize("other", ["a", None, {"k": 1}, np.array(["s"]), object()])
def test_object_and_string_operands_are_rejected(other):
    with pytest.raises(TypeError, match=r"Tensor: "):
        _t(2) + other
    with pytest.raises(TypeError, match=r"Tensor: "):
        other * _t(2)


def test_bad_shapes_and_dtypes_in_factories():
    with pytest.raises(ValueError, match=r"zeros: negative dimension in shape \(2, -1\)"):
        Tensor.zeros(2, -1)
    with pytest.raises(TypeError, match=r"ones: shape must be ints"):
        Tensor.ones(2.5)
    with pytest.raises(ValueError, match=r"eye: negative dimension"):
        Tensor.eye(-1)
    with pytest.raises(TypeError, match=r"set_default_dtype: need a floating dtype, got int64"):
        tl.set_default_dtype(np.int64)
    with pytest.raises(TypeError, match="floating"):
        tl.set_default_dtype(bool)


def test_python_scalars_do_not_upcast_float32():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    for y in (x + 1.5, 1.5 + x, x * 1e10, x / 3, 3 / x, x - 2, 2**x, x**2.5, x * True, tl.where(x > 0, x, 2.0)):
        assert y.dtype == np.float32
    assert (x * np.float64(2.0)).dtype == np.float32  # np.float64 is a Python float too (weak, as numpy)
    assert (x * np.ones(3)).dtype == np.float64  # a float64 array is not weak: numpy promotion


def test_int_tensors_follow_numpy_promotion():
    i32 = Tensor(np.array([1, 2], np.int32))
    for other in (1, 2.5, np.int64(3), np.ones(2, np.float32), np.ones(2, np.int8)):
        expected = (i32.data + other).dtype
        assert (i32 + other).dtype == expected, other
    assert (Tensor(np.array([1], np.uint8)) + 300).dtype == np.int64  # too big for uint8: promoted
