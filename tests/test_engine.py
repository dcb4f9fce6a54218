"""The engine around the ops: the Tensor API, factories, the backward walk (deep graphs, accumulation, graph
release, no reference cycles), hooks, retain_grad, grad modes, detach, retain_graph, scopes, anomaly mode,
dtypes, and a smoke run of the op benchmark so it never rots."""

from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc
import weakref
from pathlib import Path

import numpy as np
import pytest

import tinygrad_lstm as tl
from tinygrad_lstm import Tensor, engine
from tinygrad_lstm.tensor import walk

ROOT = Path(__file__).resolve().parents[1]


def _leaf(a, dtype=np.float64, name=None) -> Tensor:
    return Tensor(np.array(a, dtype=dtype), requires_grad=True, name=name)


# ------------------------------------------------------------------------------------------------ API surface


def test_public_names_import():
    from tinygrad_lstm import (  # noqa: F401
        Tensor,
        detect_anomaly,
        enable_grad,
        gradcheck,
        manual_seed,
        no_grad,
        scope,
        set_default_dtype,
    )


def test_tensor_attributes():
    t = Tensor([[1.0, 2.0, 3.0]], requires_grad=True, name="w")
    assert isinstance(t.data, np.ndarray) and t.data.dtype == np.float32  # default dtype for Python floats
    assert t.shape == (1, 3) and t.ndim == 2 and t.dtype == np.float32
    assert t.requires_grad and t.name == "w" and t.is_leaf and t.grad is None and t.grad_fn is None
    assert t.numpy() is t.data
    assert Tensor([[2.5]]).item() == 2.5 and isinstance(Tensor([[2.5]]).item(), float)
    assert Tensor(3).dtype == np.int64 and isinstance(Tensor(3).item(), int)
    assert Tensor([True, False]).dtype == np.bool_
    assert Tensor(np.ones(2, np.float64)).dtype == np.float64  # an ndarray keeps its dtype
    assert Tensor(np.ones(2, np.float16)).dtype == np.float16
    assert Tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert Tensor(Tensor([1.0])).dtype == np.float32
    y = t * 2
    assert not y.is_leaf and y.requires_grad and y.grad_fn.name == "Mul" and y.grad_fn.backward_name == "MulBackward"
    assert y.grad_fn.parents[0] is t and y.grad_fn.parents[1] is not t
    assert "grad_fn=MulBackward" in repr(y) and "name='w'" in repr(t)


def test_factories_shapes_dtypes_and_flags():
    assert Tensor.zeros(2, 3).shape == (2, 3) and Tensor.zeros((2, 3)).dtype == np.float32
    assert (Tensor.ones(4).data == 1).all()
    f = Tensor.full((2, 2), 7.5, dtype=np.float64, requires_grad=True, name="f")
    assert f.dtype == np.float64 and (f.data == 7.5).all() and f.requires_grad and f.name == "f"
    np.testing.assert_array_equal(Tensor.eye(3).data, np.eye(3))
    assert Tensor.eye(2, 4).shape == (2, 4)
    u = Tensor.uniform(1000, low=-2.0, high=-1.0)
    assert u.data.min() >= -2.0 and u.data.max() < -1.0
    r = Tensor.rand(1000)
    assert r.data.min() >= 0.0 and r.data.max() < 1.0
    assert Tensor.randn(3, 4, dtype=np.float64).dtype == np.float64
    like = Tensor(np.zeros((2, 5), np.float64))
    for make in (Tensor.zeros_like, Tensor.ones_like, Tensor.randn_like, Tensor.rand_like, Tensor.uniform_like):
        out = make(like)
        assert out.shape == (2, 5) and out.dtype == np.float64 and not out.requires_grad
    assert (Tensor.full_like(like, 3.0).data == 3).all()
    assert Tensor.zeros_like(like, dtype=np.float32, requires_grad=True).requires_grad
    assert Tensor.zeros(0, 3).shape == (0, 3)


def test_manual_seed_makes_random_factories_reproducible():
    def draw():
        return [Tensor.randn(3).data, Tensor.rand(2).data, Tensor.uniform(2, low=-1, high=1).data]

    tl.manual_seed(7)
    a = draw()
    tl.manual_seed(7)
    b = draw()
    tl.manual_seed(8)
    c = draw()
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)


# ------------------------------------------------------------------------------------------------ deep graphs


def test_chain_of_100k_ops_backprops_without_recursion():
    x = _leaf([1.0, 2.0])
    w = _leaf(0.5)
    h = x
    for _ in range(50_000):
        h = h * 1.0 + w  # two ops per step
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # the walk must not recurse at all
    try:
        h.sum().backward()
    finally:
        sys.setrecursionlimit(limit)
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])
    assert w.grad == pytest.approx(2 * 50_000)


def test_dropping_an_unused_100k_graph_does_not_overflow_the_stack():
    x = _leaf([1.0])
    h = x
    for _ in range(100_000):
        h = h + 1.0
    ref = weakref.ref(h.grad_fn)
    del h  # no backward: the chain is torn down by reference counting
    assert ref() is None


def _numpy_rnn_bptt(x, w, h0):
    """h_t = tanh(h_{t-1} @ W + x_t), loss = sum(h_T): BPTT by hand, float64."""
    hs = [h0]
    for t in range(x.shape[0]):
        hs.append(np.tanh(hs[-1] @ w + x[t]))
    dh = np.ones_like(h0)
    gw, gx = np.zeros_like(w), np.zeros_like(x)
    for t in range(x.shape[0] - 1, -1, -1):
        da = dh * (1 - hs[t + 1] ** 2)
        gw += hs[t].T @ da
        gx[t] = da
        dh = da @ w.T
    return hs[-1].sum(), gw, gx


def test_unrolled_10k_step_tanh_recurrence_backprops(np_rng):
    T, B, H = 10_000, 2, 4
    xs = np_rng.standard_normal((T, B, H)) * 0.5
    ws = np_rng.standard_normal((H, H)) * 0.4
    h0 = np_rng.standard_normal((B, H))
    x, w = _leaf(xs), _leaf(ws)
    h = Tensor(h0)
    for t in range(T):
        h = (h @ w + x[t]).tanh()
    loss = h.sum()
    loss.backward()
    ref_loss, ref_gw, ref_gx = _numpy_rnn_bptt(xs, ws, h0)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(w.grad, ref_gw, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(x.grad, ref_gx, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------------ accumulation


def test_gradients_accumulate_over_reuse_diamonds_and_shared_weights(np_rng):
    x = _leaf([1.5, -2.0])
    (x * x).sum().backward()  # one tensor twice in one op
    np.testing.assert_allclose(x.grad, 2 * x.data)

    x.grad = None
    (x + x + x).sum().backward()  # the same array handed to both inputs of Add
    np.testing.assert_allclose(x.grad, [3.0, 3.0])

    x.grad = None
    a, b = x * 2.0, x.exp()  # a diamond: x -> a, b -> a*b
    (a * b).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * np.exp(x.data) + 2 * x.data * np.exp(x.data))

    w = _leaf(np_rng.standard_normal((3, 3)))
    inp = np_rng.standard_normal((2, 3))
    ((Tensor(inp) @ w).tanh() @ w).sum().backward()  # a weight shared by two layers
    h = np.tanh(inp @ w.data)
    g_second = h.T @ np.ones((2, 3))
    g_first = inp.T @ ((np.ones((2, 3)) @ w.data.T) * (1 - h**2))
    np.testing.assert_allclose(w.grad, g_first + g_second, rtol=1e-12)

    before = w.grad.copy()
    ((Tensor(inp) @ w).tanh() @ w).sum().backward()  # a second backward adds to .grad
    np.testing.assert_allclose(w.grad, 2 * before, rtol=1e-12)


def test_zero_dim_leaf_used_many_times_sums_every_term():
    x = _leaf(1.0)
    y = x * 1.0 + x * 2.0 + x * 3.0 + x * 4.0
    y.backward()
    assert isinstance(x.grad, np.ndarray) and x.grad.shape == () and x.grad == 10.0
    y2 = x * 5.0
    y2.backward()
    assert isinstance(x.grad, np.ndarray) and x.grad == 15.0


def test_leaf_gradients_are_private_arrays():
    """Each .grad is its own array: editing one in place (as clip_grad_norm_ does) changes nothing else."""
    a, b = _leaf([1.0, 2.0]), _leaf([3.0, 4.0])
    g = np.array([1.0, 1.0])
    (a + b).backward(g)
    assert a.grad is not b.grad and a.grad is not g
    a.grad *= 10
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])
    np.testing.assert_array_equal(g, [1.0, 1.0])

    c = _leaf([5.0])
    c.backward(g[:1])  # a leaf root: the given gradient is copied, not kept
    c.grad += 1
    np.testing.assert_array_equal(g, [1.0, 1.0])

    w = _leaf(np.ones((3, 2)))
    kept = []
    w.register_hook(lambda grad: kept.append(grad))
    (Tensor(np.ones((4, 3))) @ w).sum().backward()
    w.grad[:] = 0  # the hook's array is not .grad
    np.testing.assert_array_equal(kept[0], np.full((3, 2), 4.0))

    v = _leaf(np.ones(3))
    s = (v * 2.0).sum()
    s.backward(retain_graph=True)
    node = s.grad_fn.parents[0]  # a node's inputs are vertices: the node that made each
    v.grad *= 0  # retain_graph keeps per-node gradients for the renderer: they must not change
    np.testing.assert_array_equal(node.grads_in[0], [2.0, 2.0, 2.0])


def test_in_place_sums_never_touch_an_array_someone_else_holds():
    """Gradients are summed in place only into arrays the engine allocated and handed to no one (ownership)."""
    x = _leaf([1.0, 2.0, 3.0])
    # y's Add hands the user's own array to a, which then gets a second term from a * 2.0.
    a = x * 1.0
    y = a + a * 2.0
    g = np.array([1.0, 1.0, 1.0])
    y.backward(g)
    np.testing.assert_array_equal(g, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(x.grad, [3.0, 3.0, 3.0])

    # A hook keeps z's gradient (the array, or a view of it); z's Add hands that very array on to p, which then
    # gets p3's term.
    for keep in (lambda grad: grad, lambda grad: grad[:2]):
        x.grad = None
        kept = []
        p = x * 1.0
        p3 = p * 3.0
        z = p + 1.0
        z.register_hook(lambda grad, keep=keep, kept=kept: kept.append(keep(grad)))
        (p3 + z * 1.0).backward(np.ones(3))
        np.testing.assert_array_equal(kept[0], np.ones(kept[0].shape))
        np.testing.assert_array_equal(x.grad, [4.0, 4.0, 4.0])

    # A reshape's VJP hands p a view of the user's array: p's next term must not be added into that memory.
    x.grad = None
    p = x * 1.0
    w = p * 2.0
    root = w.reshape(1, 3) + p.reshape(1, 3)
    g = np.ones((1, 3))
    root.backward(g)
    np.testing.assert_array_equal(g, [[1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(x.grad, [3.0, 3.0, 3.0])


# ------------------------------------------------------------------------------------------------ graph release


def test_backward_releases_the_graph_and_a_second_backward_explains_itself():
    x = _leaf([1.0, 2.0])
    y = x.exp() * 3.0
    z = y.sum()
    assert y.grad_fn.saved_shapes == ((2,), ())
    z.backward()
    assert z.grad_fn.parents is None and y.grad_fn.parents is None
    assert y.grad_fn.saved_shapes == ()
    with pytest.raises(RuntimeError, match=r"retain_graph=True"):
        z.backward()
    with pytest.raises(RuntimeError, match=r"retain_graph=True"):
        (y * 2).sum().backward()


def test_the_graph_keeps_only_what_backward_needs():
    """As PyTorch's: an intermediate that no VJP saved is freed when the program drops it, while its node, its
    name, its hooks and a retained gradient live on in the graph."""
    x = _leaf([0.5, -1.0, 2.0])
    a = x * 2.0  # Mul saves x (and the 2.0)
    b = a + 1.0  # Add saves nothing: a's array is read by no VJP
    b.name = "b"
    seen = []
    b.register_hook(lambda g: seen.append(g.copy()))
    b.retain_grad()
    c = b.sigmoid()  # Sigmoid saves its output, not b
    refs = {k: weakref.ref(t.data) for k, t in {"a": a, "b": b, "c": c}.items()}
    b_ref = weakref.ref(b)
    del a, b
    assert refs["a"]() is None and refs["b"]() is None and refs["c"]() is not None
    assert c.grad_fn.parents[0].out_name == "b"  # the name is kept on the node (graphs draw it)
    (c * c).sum().backward()
    s = 1 / (1 + np.exp(-(np.array([0.5, -1.0, 2.0]) * 2 + 1)))
    np.testing.assert_allclose(seen[0], 2 * s * s * (1 - s))  # the hook ran on the dropped tensor's gradient
    np.testing.assert_allclose(x.grad, 2 * seen[0])
    assert b_ref() is None  # retain_grad keeps no tensor alive (a weak reference, as PyTorch's)


def test_intermediates_die_after_backward_without_the_cycle_collector(np_rng):
    gc.collect()
    gc.disable()  # anything kept alive only by a reference cycle would now leak and fail the test
    try:
        x = Tensor(np_rng.standard_normal((4, 3)))
        w = _leaf(np_rng.standard_normal((3, 3)))
        h = (x @ w).tanh()
        h_ref, node_ref, data_ref = weakref.ref(h), weakref.ref(h.grad_fn), weakref.ref(h.data)
        loss = (h * h).mean()
        del h
        # The graph holds nodes and the arrays their VJPs saved, never tensors: h is gone, its data stays (Tanh
        # and Mul saved it), until backward
        assert h_ref() is None and node_ref() is not None and data_ref() is not None
        loss.backward()
        assert node_ref() is None and data_ref() is None  # released by backward itself
        loss_node = weakref.ref(loss.grad_fn)
        del loss
        assert loss_node() is None

        # Without a backward, dropping the output frees the whole graph too.
        h = (x @ w).tanh()
        refs = [weakref.ref(t) for t in walk((h * 2).sum())]
        h_ref = weakref.ref(h)
        del h
        assert all(r() is None for r in refs if r() is not w and r() is not x)
        assert h_ref() is None
        assert w.grad is not None and x.grad is None
    finally:
        gc.enable()


def test_memory_stays_flat_over_repeated_forward_backward(np_rng):
    W = _leaf(np_rng.standard_normal((16, 16)) * 0.3)
    xs = Tensor(np_rng.standard_normal((20, 8, 16)))

    def step():
        W.grad = None
        h = Tensor.zeros(8, 16, dtype=np.float64)
        for t in range(20):
            h = (h @ W + xs[t]).tanh()
        h.sum().backward()

    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        for _ in range(3):
            step()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(30):
            step()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
        gc.enable()
    # One iteration's graph is ~100 KB; 30 leaked iterations would be megabytes.
    assert grown < 32_000, f"memory grew by {grown} bytes over 30 iterations"


# ------------------------------------------------------------------------------------------------ retain_graph


def test_retain_graph_allows_a_second_backward_that_accumulates():
    x = _leaf([1.0, 2.0, 3.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad, 2 * x.data)
    node = y.grad_fn
    assert node.parents is not None and node.grad_out == 1.0
    np.testing.assert_allclose(node.grads_in[0], [1.0, 1.0, 1.0])
    y.backward()  # second walk through the retained graph, then release
    np.testing.assert_allclose(x.grad, 4 * x.data)
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


# ------------------------------------------------------------------------------------------------ leaves, hooks


def test_only_leaves_keep_grad_unless_retain_grad():
    x = _leaf([1.0, -1.0])
    h = x * 3.0
    k = h.tanh()
    k.retain_grad()
    out = (k * 2.0).sum()
    out.backward()
    assert h.grad is None and out.grad is None
    np.testing.assert_allclose(k.grad, [2.0, 2.0])
    np.testing.assert_allclose(x.grad, 2 * (1 - np.tanh(3 * x.data) ** 2) * 3)
    assert x.is_leaf and not h.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).retain_grad()


def test_hooks_see_the_complete_gradient_and_may_replace_it():
    x = _leaf([1.0, 2.0])
    seen = []
    h = x * 2.0
    h.register_hook(lambda g: seen.append(g.copy()))
    (h * 3.0 + h).sum().backward()  # h is used twice: the hook gets the sum once
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], [4.0, 4.0])
    np.testing.assert_allclose(x.grad, [8.0, 8.0])

    x.grad = None
    h = x * 2.0
    h.register_hook(lambda g: g * 10)  # replacement flows on to x
    h.sum().backward()
    np.testing.assert_allclose(x.grad, [20.0, 20.0])

    x.grad = None
    remove = x.register_hook(lambda g: Tensor(np.zeros_like(g)))  # a Tensor is accepted too
    (x * 5.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])
    remove()
    x.grad = None
    (x * 5.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [5.0, 5.0])

    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).register_hook(lambda g: g)


# ------------------------------------------------------------------------------------------------ grad modes


def test_no_grad_and_enable_grad_as_context_managers():
    x = _leaf([1.0])
    with tl.no_grad():
        y = x * 2
        assert not y.requires_grad and y.grad_fn is None and y.is_leaf
        with tl.enable_grad():
            z = x * 2
            assert z.requires_grad and z.grad_fn is not None
        w = x * 2
        assert not w.requires_grad
    assert (x * 2).requires_grad


def test_no_grad_and_enable_grad_as_decorators():
    x = _leaf([1.0])

    @tl.no_grad()
    def infer(t):
        """Doc."""
        return t * 2

    @tl.enable_grad()
    def train(t):
        return t * 2

    assert not infer(x).requires_grad
    assert infer.__name__ == "infer" and infer.__doc__ == "Doc."
    with tl.no_grad():
        assert train(x).requires_grad
        assert not (x * 2).requires_grad  # the decorator restored the outer mode
    assert (x * 2).requires_grad


def test_grad_mode_is_restored_after_an_exception():
    x = _leaf([1.0])
    with pytest.raises(KeyError), tl.no_grad():
        raise KeyError("boom")
    assert (x * 2).requires_grad


def test_detach_cuts_the_graph_and_shares_data():
    x = _leaf([1.0, 2.0])
    y = x * 3.0
    d = y.detach()
    assert d.is_leaf and not d.requires_grad and d.grad_fn is None
    assert np.shares_memory(d.data, y.data)
    assert d.detached_from is y
    out = (d * x).sum()
    out.backward()
    np.testing.assert_allclose(x.grad, y.data)  # no path through d


def test_scope_tags_nodes():
    x = _leaf([1.0])
    with tl.scope("lstm"):
        a = x * 2
        with tl.scope("t=3"):
            b = a.tanh()
    c = b + 1
    assert a.grad_fn.scope == ("lstm",)
    assert b.grad_fn.scope == ("lstm", "t=3")
    assert c.grad_fn.scope == ()
    with pytest.raises(ValueError), tl.scope("x"):
        raise ValueError
    assert (x * 1).grad_fn.scope == ()


# ------------------------------------------------------------------------------------------------ anomaly mode


def test_detect_anomaly_in_forward_names_op_scope_and_shapes():
    x = _leaf([1.0, -1.0])
    with np.errstate(all="ignore"):
        assert np.isnan(x.log().data).any()  # off: NaN passes silently
        with (
            pytest.raises(tl.AnomalyError, match=r"Log produced NaN.*scope enc/step.*\(2,\)"),
            tl.detect_anomaly(),
            tl.scope("enc"),
            tl.scope("step"),
        ):
            x.log()
        with pytest.raises(tl.AnomalyError, match=r"Div produced Inf.*<top level>.*\(2,\), \(\)"), tl.detect_anomaly():
            x / 0.0


def test_detect_anomaly_in_backward_names_the_vjp():
    x = _leaf([0.0, 4.0])
    with np.errstate(all="ignore"):
        with tl.detect_anomaly():
            with tl.scope("cell"):
                y = x.sqrt()  # finite forward, infinite derivative at 0
            with pytest.raises(tl.AnomalyError, match=r"SqrtBackward produced Inf.*scope cell.*\(2,\)"):
                y.sum().backward()

        @tl.detect_anomaly()
        def run():
            (_leaf([0.0]).sqrt() * 1.0).sum().backward()

        with pytest.raises(RuntimeError, match="SqrtBackward"):
            run()
    (_leaf([4.0]).sqrt()).sum().backward()  # the mode is off again


# ------------------------------------------------------------------------------------------------ dtypes


def test_float32_graph_stays_float32_through_python_scalars_and_backward():
    x = Tensor(np.array([[0.5, -1.5, 2.0]], np.float32), requires_grad=True)
    w = Tensor(np.full((3, 2), 0.1, np.float32), requires_grad=True)
    y = ((x * 2.5 + 1) / 3 - 0.25) ** 2
    y = 1.5 - y + 2 ** x.clip(-1, 1) + x.sigmoid() * 0.3 + x.leaky_relu(0.2) + tl.maximum(x, 0.1)
    y = tl.where(x > 0, y, 0.5).abs().sqrt().exp().log().tanh()
    out = (y @ w).softmax().logsumexp() + (y @ w).mean() * 0.5 + (y @ w).max()
    dtypes = [engine.shape_dtype(v)[1] for v in walk(out)]  # every vertex: op outputs and leaves
    assert all(dt == np.float32 for dt in dtypes if dt != np.bool_)  # (where's condition is bool)
    out.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_mixed_dtypes_follow_numpy_promotion_and_grads_keep_input_dtypes():
    a = Tensor(np.ones(2, np.float32), requires_grad=True)
    b = Tensor(np.ones(2, np.float64), requires_grad=True)
    c = a * b
    assert c.dtype == np.result_type(np.float32, np.float64)
    c.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    i = Tensor(np.array([1, 2], np.int32))
    assert (i + a).dtype == np.result_type(np.int32, np.float32)
    assert (i + 1).dtype == np.int32 and (2 * i).dtype == np.int32  # Python ints are weak, as in numpy
    assert (i + 1.5).dtype == (i.data + 1.5).dtype
    assert (i + 2**40).dtype == np.int64
    assert (Tensor([True]) + 1).dtype == (np.array([True]) + 1).dtype
    assert (a + np.ones(2, np.float64)).dtype == np.float64  # an array is not a weak Python scalar
    assert (a.astype(np.float64)).dtype == np.float64
    a.grad = None
    a.double().sum().backward()
    assert a.grad.dtype == np.float32


def test_default_dtype_switch():
    assert tl.get_default_dtype() == np.float32
    tl.set_default_dtype(np.float64)
    assert Tensor(1.0).dtype == np.float64 and Tensor([1.0, 2.0]).dtype == np.float64
    assert Tensor.zeros(2).dtype == np.float64 and Tensor.randn(2).dtype == np.float64
    assert Tensor(np.ones(2, np.float32)).dtype == np.float32  # explicit arrays keep their dtype
    assert Tensor([1, 2]).dtype == np.int64
    tl.set_default_dtype(np.float32)
    with tl.default_dtype(np.float64):
        assert Tensor(1.0).dtype == np.float64
    assert Tensor(1.0).dtype == np.float32
    with pytest.raises(TypeError, match="floating"):
        tl.set_default_dtype(np.int32)


def test_conftest_restored_the_default_dtype():
    """Run after test_default_dtype_switch in file order: the fixture put float32 back."""
    tl.set_default_dtype(np.float64)
    assert Tensor(1.0).dtype == np.float64


def test_default_dtype_is_float32_again():
    assert Tensor(1.0).dtype == np.float32


# ------------------------------------------------------------------------------------------------ benchmark


def test_bench_ops_quick_runs():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_ops.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "matmul 32x128@128x128" in out and "median wrapper" in out
    assert out.count("ratio") >= 2
