"""Forward mode: every primitive's JVP against central differences in float64 over the same cases as its VJP
(test_ops.py's tables), against ``torch.func.jvp``, k directions at once against k single passes, ``<v, J u> =
<J^T v, u>`` on random compositions, and ``gradcheck(check_forward_ad=True)`` failing on a wrong JVP.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_ops import (
    BINARY,
    CAT_CASES,
    LINEAR_SHAPES,
    MATMUL_SHAPES,
    MOVEMENT,
    REDUCE,
    REDUCE_CASES,
    SHAPE_PAIRS,
    UNARY,
    UNARY_SHAPES,
    _any,
    _distinct,
    _leaf,
)

import tinygrad_lstm as tl
from tinygrad_lstm import GradcheckError, Tensor, engine, gradcheck, nn, ops
from tinygrad_lstm.nn.functional import affine
from tinygrad_lstm.tensor import get_tangent, set_tangent


def _fwd_check(fn, xs, rng, k: int = 3) -> None:
    """The JVPs against central differences (gradcheck's forward mode), then k directions in one pass equal to k
    single passes, for every output."""
    assert gradcheck(fn, xs, check_forward_ad=True, check_backward_ad=False)
    arrays = [x.data for x in xs]
    us = [rng.standard_normal((k, *a.shape)) for a in arrays]
    _, many = tl.jvp(fn, tuple(arrays), tuple(us), directions=True)
    many = many if isinstance(many, tuple) else (many,)
    for d in range(k):
        _, one = tl.jvp(fn, tuple(arrays), tuple(u[d] for u in us))
        one = one if isinstance(one, tuple) else (one,)
        for m, o in zip(many, one):
            assert m.shape == (k, *o.shape)
            np.testing.assert_allclose(m.data[d], o.data, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_jvp(name, shapes, np_rng):
    fn, make_a, make_b = BINARY[name]
    _fwd_check(fn, [_leaf(make_a(shapes[0], np_rng)), _leaf(make_b(shapes[1], np_rng))], np_rng)


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
def test_where_jvp(shapes, np_rng):
    cond = np_rng.random(np.broadcast_shapes(*shapes)) > 0.5
    _fwd_check(lambda x, y: tl.where(cond, x, y), [_leaf(_any(s, np_rng)) for s in shapes], np_rng)


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_jvp(shapes, np_rng):
    _fwd_check(lambda a, b: a @ b, [_leaf(_any(s, np_rng)) for s in shapes], np_rng)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", LINEAR_SHAPES, ids=str)
def test_linear_jvp(shape, with_bias, np_rng):
    xs = [_leaf(_any(shape, np_rng)), _leaf(_any((4, 3), np_rng))] + ([_leaf(_any((4,), np_rng))] if with_bias else [])
    _fwd_check(lambda *a: affine(*a), xs, np_rng)


@pytest.mark.parametrize(("shape", "addend"), [((2, 3), (2, 4)), ((5, 2, 3), (2, 4)), ((5, 2, 3), (5, 1, 4))], ids=str)
def test_linear_addend_jvp(shape, addend, np_rng):
    xs = [_leaf(_any(s, np_rng)) for s in (shape, (4, 3), addend)]
    _fwd_check(lambda *a: affine(*a), xs, np_rng)


@pytest.mark.parametrize("name, shape", [(n, s) for n in UNARY for s in UNARY_SHAPES if len(s) >= UNARY[n][2]], ids=str)
def test_unary_jvp(name, shape, np_rng):
    fn, make, _ = UNARY[name]
    _fwd_check(fn, [_leaf(make(shape, np_rng))], np_rng)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("case", REDUCE_CASES, ids=str)
@pytest.mark.parametrize("name", list(REDUCE))
def test_reduction_jvp(name, case, keepdims, np_rng):
    shape, axis = case
    ours = REDUCE[name][0]
    _fwd_check(lambda t: ours(t, axis=axis, keepdims=keepdims), [_leaf(_distinct(shape, np_rng))], np_rng)


@pytest.mark.parametrize("case", MOVEMENT, ids=[c[0] for c in MOVEMENT])
def test_movement_jvp(case, np_rng):
    _, shape, fn, _ = case
    _fwd_check(fn, [_leaf(_any(shape, np_rng))], np_rng)


@pytest.mark.parametrize(
    "index",
    [
        (np.array([0, 2]), slice(None), np.array([1, 0])),  # advanced indices apart: numpy moves their axis first
        (Ellipsis, np.array([2, 0, 2])),
        (np.array([[True, False], [True, True], [False, False], [True, False]]), Ellipsis),
        (1, Ellipsis, None, np.array([0, 2])),
        (slice(None), np.array([1]), np.array([[0], [2]])),
    ],
    ids=["apart", "ellipsis+array", "bool+ellipsis", "int,...,None,array", "slice,broadcast arrays"],
)
def test_getitem_jvp_with_advanced_indices_anywhere(index, np_rng):
    _fwd_check(lambda t: t[index], [_leaf(_any((4, 2, 3), np_rng))], np_rng)


@pytest.mark.parametrize("case", CAT_CASES, ids=str)
def test_cat_jvp(case, np_rng):
    shapes, axis = case
    _fwd_check(lambda *ts: tl.cat(list(ts), axis=axis), [_leaf(_any(s, np_rng)) for s in shapes], np_rng)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_stack_jvp(axis, np_rng):
    _fwd_check(lambda *ts: tl.stack(ts, axis=axis), [_leaf(_any((2, 3), np_rng)) for _ in range(3)], np_rng)


def test_cat_and_stack_with_some_tangents_missing(np_rng):
    a, b = _any((2, 3), np_rng), _any((2, 3), np_rng)
    u = np_rng.standard_normal((2, 3))
    _, t = tl.jvp(lambda x: tl.cat([x, Tensor(b)], axis=1), (a,), (u,))
    np.testing.assert_array_equal(t.data, np.concatenate([u, np.zeros((2, 3))], axis=1))
    _, t = tl.jvp(lambda x: tl.stack([Tensor(b), x, Tensor(b)], axis=-1), (a,), (u,))
    np.testing.assert_array_equal(t.data, np.stack([np.zeros((2, 3)), u, np.zeros((2, 3))], axis=-1))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_gather_and_topk_jvp(axis, np_rng):
    x = _leaf(_distinct((3, 4, 5), np_rng))
    index = np_rng.integers(0, x.shape[axis], size=(3, 4, 5))
    _fwd_check(lambda t: t.gather(axis, index), [x], np_rng)
    _fwd_check(lambda t: t.topk(2, axis=axis)[0], [x], np_rng)


def test_cast_and_clone_jvp(np_rng):
    _fwd_check(lambda t: t.clone() * t, [_leaf(_any((2, 3), np_rng))], np_rng)
    x, u = _any((2, 3), np_rng).astype(np.float32), np_rng.standard_normal((2, 3)).astype(np.float32)
    _, t = tl.jvp(lambda a: a.astype(np.float64) * 2.0, (x,), (u,))
    assert t.dtype == np.float64  # the tangent takes the output's dtype
    np.testing.assert_array_equal(t.data, 2.0 * u.astype(np.float64))
    _, t = tl.jvp(lambda a: a.astype(np.int64), (x,), (u,))
    np.testing.assert_array_equal(t.data, 0.0)  # an integer output carries no tangent


# ------------------------------------------------------------------------------------------------ wrong JVPs


class WrongTanhJvp(ops.Tanh):
    """tanh with a deliberately wrong JVP (the square forgotten); its VJP is right."""

    def jvp(self, t):
        return t * (1 - self.saved[0])


def test_gradcheck_forward_mode_fails_on_a_wrong_jvp(np_rng):
    from tinygrad_lstm.tensor import _apply

    x = Tensor(np_rng.uniform(0.5, 1.5, (2, 3)), requires_grad=True, name="h")
    assert gradcheck(lambda a: _apply(WrongTanhJvp, a), [x])  # the VJP check alone passes
    with pytest.raises(GradcheckError, match=r"forward mode.*input 0 \(h\) of shape \(2, 3\)"):
        gradcheck(lambda a: _apply(WrongTanhJvp, a), [x], check_forward_ad=True)


def test_gradcheck_forward_mode_fails_on_a_monkeypatched_jvp(monkeypatch, np_rng):
    a, b = _leaf(_any((2, 3), np_rng)), _leaf(_any((3,), np_rng))
    assert gradcheck(lambda x, y: x * y, [a, b], check_forward_ad=True)
    monkeypatch.setattr(ops.Mul, "jvp", lambda self, ta, tb: None if ta is None else ta * self.saved[1])
    with pytest.raises(GradcheckError, match=r"forward mode.*input 1"):
        gradcheck(lambda x, y: x * y, [a, b], check_forward_ad=True, check_backward_ad=False)


# ------------------------------------------------------------------------------------------------ jvp and vjp


def _composition(rng: np.random.Generator, depth: int):
    """A random composition of ops on two inputs of shape (3, 4), returning (fn, [a, b])."""
    unary = [
        Tensor.tanh,
        Tensor.sigmoid,
        Tensor.exp,
        lambda t: t.softmax(axis=-1),
        lambda t: t.log_softmax(axis=0),
        lambda t: t * t,
        lambda t: t.T.T,
        lambda t: t[::-1],
        lambda t: (t - t.mean(axis=0, keepdims=True)) / 2.0,
        lambda t: t.reshape(4, 3).reshape(3, 4),
        lambda t: t.sum(axis=1, keepdims=True) + t,
    ]
    binary = [
        lambda x, y: x + y,
        lambda x, y: x * y,
        lambda x, y: x - 0.5 * y,
        lambda x, y: (x @ y.T) @ y * 0.1,
        lambda x, y: tl.cat([x[:, :2], y[:, 2:]], axis=1),
        lambda x, y: tl.stack([x, y]).max(axis=0),
    ]
    steps = [(int(rng.integers(len(unary))), int(rng.integers(len(binary)))) for _ in range(depth)]

    def fn(a, b):
        x, y = a, b
        for u, bi in steps:
            x, y = binary[bi](unary[u](x), y), x
        return x, y.sum(axis=0)

    return fn


@pytest.mark.parametrize("seed", range(8))
def test_jvp_and_vjp_agree_on_random_compositions(seed):
    """<v, J u> == <J^T v, u>: forward and reverse mode are adjoint, through any composition."""
    rng = np.random.default_rng(seed)
    fn = _composition(rng, depth=4)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    ua, ub = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    outs, touts = tl.jvp(fn, (a, b), (ua, ub))
    outs2, vjp_fn = tl.vjp(fn, (a, b))
    vs = [rng.standard_normal(o.shape) for o in outs]
    ga, gb = vjp_fn(*vs)
    for o, o2 in zip(outs, outs2):
        np.testing.assert_array_equal(o.data, o2.data)
    lhs = sum(float(np.sum(v * t.data)) for v, t in zip(vs, touts))
    rhs = float(np.sum(ga.data * ua) + np.sum(gb.data * ub))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-12)
    # vjp_fn can be called again, and is linear in the cotangent.
    ga2, _ = vjp_fn(*(2 * v for v in vs))
    np.testing.assert_allclose(ga2.data, 2 * ga.data, rtol=1e-12)


def test_jvp_through_modules_recurrent_layers_and_under_no_grad(np_rng):
    tl.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, dtype=np.float64)
    head = nn.Linear(4, 2, dtype=np.float64)
    x, u = np_rng.standard_normal((5, 2, 3)), np_rng.standard_normal((5, 2, 3))

    def fn(xs):
        out, (_, c) = lstm(xs)
        return head(out).tanh(), c

    with tl.no_grad():
        (y, _), (ty, tc) = tl.jvp(fn, (x,), (u,))
        eps = 1e-6
        up, down = fn(Tensor(x + eps * u)), fn(Tensor(x - eps * u))
    assert not y.requires_grad
    np.testing.assert_allclose(ty.data, (up[0].data - down[0].data) / (2 * eps), atol=1e-8)
    np.testing.assert_allclose(tc.data, (up[1].data - down[1].data) / (2 * eps), atol=1e-8)
    assert lstm.weight_hh_l0.grad is None  # jvp records nothing into parameters


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
def test_vjp_leaves_parameters_grad_alone(kind, np_rng):
    tl.manual_seed(1)
    cell = getattr(nn, kind)(3, 4, dtype=np.float64)
    cell.weight_hh.grad = np.ones(cell.weight_hh.shape)
    x, h = np_rng.standard_normal((2, 3)), np_rng.standard_normal((2, 4))

    def fn(xx, hh):
        s = cell(xx, (hh, hh) if kind == "LSTMCell" else hh)
        return s[0] if kind == "LSTMCell" else s

    out, vjp_fn = tl.vjp(fn, (x, h))
    v = np_rng.standard_normal(out.shape)
    _, gh = vjp_fn(v)
    np.testing.assert_array_equal(cell.weight_hh.grad, 1.0)
    u = np_rng.standard_normal((2, 4))
    _, th = tl.jvp(fn, (x, h), (np.zeros((2, 3)), u))
    assert float(np.sum(v * th.data)) == pytest.approx(float(np.sum(gh.data * u)), rel=1e-10)


def test_jvp_output_that_does_not_depend_on_the_input_has_a_zero_tangent():
    _, t = tl.jvp(lambda x: (x * 2, Tensor(np.ones(3))), (np.ones(2),), (np.ones(2),))
    np.testing.assert_array_equal(t[0].data, 2.0)
    np.testing.assert_array_equal(t[1].data, 0.0)


def test_a_tangent_from_an_earlier_level_does_not_leak():
    x = Tensor(np.ones(3))
    with engine.DualLevel(1):
        set_tangent(x, np.ones((1, 3)))
        assert get_tangent(x * 2) is not None
    with engine.DualLevel(1):
        assert get_tangent(x) is None and get_tangent(x * 2) is None


def test_levels_do_not_nest_and_bad_arguments_are_named():
    with engine.DualLevel(2), pytest.raises(RuntimeError, match="do not nest"), engine.DualLevel(1):
        pass
    with pytest.raises(ValueError, match=r"k .*>= 1"):
        engine.DualLevel(0)
    with pytest.raises(ValueError, match=r"jvp: tangents\[0\] has shape \(2,\)"):
        tl.jvp(lambda x: x, (np.ones(3),), (np.ones(2),))
    with pytest.raises(ValueError, match="one tangent per primal"):
        tl.jvp(lambda x: x, (np.ones(3),), ())
    with pytest.raises(TypeError, match="fn must return a Tensor"):
        tl.jvp(lambda x: 3, (np.ones(3),), (np.ones(3),))
    with pytest.raises(RuntimeError, match="forward mode is off"):
        set_tangent(Tensor(np.ones(2)), np.ones((1, 2)))
    _, vjp_fn = tl.vjp(lambda x: x * 2, (np.ones(3),))
    with pytest.raises(ValueError, match="cotangent 0 has shape"):
        vjp_fn(np.ones(2))


@pytest.mark.parametrize("shape", [(3,), (2, 3), (5, 2, 3)], ids=str)
def test_linear_basis_tangent_equals_the_dense_identity(shape, np_rng):
    """RTRL's seed: a ``Basis`` on the weight and bias gives the same tangent as the dense one-hot directions."""
    x, w, b = _any(shape, np_rng), _any((4, 3), np_rng), _any((4,), np_rng)
    tx = np_rng.standard_normal((16 + 3, *shape))
    k = 19  # 12 weight directions, 4 bias directions, 3 unused
    results = []
    for dense in (False, True):
        with engine.DualLevel(k):
            xt, wt, bt = Tensor(x), Tensor(w), Tensor(b)
            set_tangent(xt, tx)
            wb, bb = ops.Basis(k, 0, (4, 3)), ops.Basis(k, 12, (4,))
            set_tangent(wt, wb.dense(np.float64) if dense else wb)
            set_tangent(bt, bb.dense(np.float64) if dense else bb)
            results.append(get_tangent(affine(xt, wt, bt)))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-13, atol=1e-14)


# ------------------------------------------------------------------------------------------------ PyTorch


def _torch_jvp(ours, theirs, arrays, rng, atol=1e-10):
    torch = pytest.importorskip("torch")
    func = pytest.importorskip("torch.func")
    us = [rng.standard_normal(np.shape(a)) for a in arrays]
    out, t = tl.jvp(ours, tuple(arrays), tuple(us))
    tout, tt = func.jvp(theirs, tuple(torch.tensor(a) for a in arrays), tuple(torch.tensor(u) for u in us))
    np.testing.assert_allclose(out.data, tout.numpy(), atol=atol, rtol=0)
    np.testing.assert_allclose(t.data, tt.numpy(), atol=atol, rtol=0)


TORCH_CASES = [
    ("add", lambda a, b: a + b, lambda a, b: a + b, [(2, 3), (3,)]),
    ("mul", lambda a, b: a * b, lambda a, b: a * b, [(4, 1, 3), (2, 1)]),
    ("div", lambda a, b: a / (b * b + 1), lambda a, b: a / (b * b + 1), [(2, 3), (2, 1)]),
    ("matmul", lambda a, b: a @ b, lambda a, b: a @ b, [(5, 2, 3), (3, 4)]),
    ("matmul 1-d", lambda a, b: a @ b, lambda a, b: a @ b, [(3,), (5, 3, 4)]),
    ("tanh sigmoid", lambda a: a.tanh().sigmoid(), lambda a: a.tanh().sigmoid(), [(2, 3)]),
    ("exp log", lambda a: (a * a + 1).log().exp(), lambda a: (a * a + 1).log().exp(), [(2, 3)]),
    ("softmax", lambda a: a.softmax(axis=0), lambda a: a.softmax(dim=0), [(3, 4)]),
    ("log_softmax", lambda a: a.log_softmax(), lambda a: a.log_softmax(dim=-1), [(3, 4)]),
    ("logsumexp", lambda a: a.logsumexp(axis=1), lambda a: a.logsumexp(dim=1), [(3, 4)]),
    ("sum mean", lambda a: a.sum(axis=0) + a.mean(), lambda a: a.sum(dim=0) + a.mean(), [(3, 4)]),
    ("max", lambda a: a.max(axis=1), lambda a: a.amax(dim=1), [(3, 4)]),
    (
        "transpose getitem",
        lambda a: a.transpose(2, 0, 1)[1:, [0, 2]],
        lambda a: a.permute(2, 0, 1)[1:, [0, 2]],
        [(4, 2, 3)],
    ),
    ("pow", lambda a, b: (a * a + 0.5) ** b, lambda a, b: (a * a + 0.5) ** b, [(2, 3), (2, 3)]),
]


@pytest.mark.parametrize("case", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_jvp_matches_torch_func_jvp(case, np_rng):
    _, ours, theirs, shapes = case
    make = _distinct if case[0] == "max" else _any
    arrays = [make(s, np_rng) for s in shapes]
    _torch_jvp(ours, theirs, arrays, np_rng)


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cell_jvp_matches_torch(kind, np_rng):
    torch = pytest.importorskip("torch")
    func = pytest.importorskip("torch.func")
    tl.manual_seed(3)
    ours = getattr(nn, kind)(3, 4, dtype=np.float64)
    theirs = getattr(torch.nn, kind)(3, 4).double()
    theirs.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in ours.state_dict().items()})
    x, h, u = np_rng.standard_normal((2, 3)), np_rng.standard_normal((2, 4)), np_rng.standard_normal((2, 4))
    if kind == "LSTMCell":
        _, t = tl.jvp(lambda hh: ours(Tensor(x), (hh, hh))[1], (h,), (u,))
        _, tt = func.jvp(lambda hh: theirs(torch.tensor(x), (hh, hh))[1], (torch.tensor(h),), (torch.tensor(u),))
    else:
        _, t = tl.jvp(lambda hh: ours(Tensor(x), hh), (h,), (u,))
        _, tt = func.jvp(lambda hh: theirs(torch.tensor(x), hh), (torch.tensor(h),), (torch.tensor(u),))
    np.testing.assert_allclose(t.data, tt.detach().numpy(), atol=1e-10, rtol=0)


def test_linear_indexed_basis_equals_its_dense_form(np_rng):
    """SnAp's compressed seed: entries sharing a direction (here two in one row, and rows sharing one) sum."""
    x, w, b = _any((5, 3), np_rng), _any((4, 3), np_rng), _any((4,), np_rng)
    wi, bi = np_rng.integers(0, 6, 12), np.array([0, 5, 5, 2])
    wi[:2] = 1  # entries (0, 0) and (0, 1): one direction, one output row
    results = []
    for dense in (False, True):
        with engine.DualLevel(7):
            xt, wt, bt = Tensor(x), Tensor(w), Tensor(b)
            wb, bb = ops.Basis(7, 1, (4, 3), index=wi), ops.Basis(7, 0, (4,), index=bi)
            set_tangent(wt, wb.dense(np.float64) if dense else wb)
            set_tangent(bt, bb.dense(np.float64) if dense else bb)
            results.append(get_tangent(affine(xt, wt, bt)))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-13, atol=1e-14)
    assert np.abs(results[0]).max() > 0


def test_basis_index_is_checked():
    with pytest.raises(ValueError, match="index must be 6 ints"):
        ops.Basis(4, 0, (2, 3), index=np.zeros(5, int))
    with pytest.raises(ValueError, match="index must be 6 ints"):
        ops.Basis(4, 0, (2, 3), index=np.zeros(6))
    with pytest.raises(ValueError, match=r"must lie in 0\.\.3"):
        ops.Basis(4, 1, (2, 3), index=np.arange(6) % 4)
