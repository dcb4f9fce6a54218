"""The engine's safety rules: per-thread modes, version counters, in-place writes, errors that point at the fix,
and sums that never write into an array someone else was handed (the ownership flag)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import tinygrad_lstm as tl
from tinygrad_lstm import Tensor, bptt, engine, nn, no_grad, optim, scope


def _leaf(values, dtype=np.float64):
    return Tensor(np.array(values, dtype), requires_grad=True)


# ------------------------------------------------------------------------------------------------ ownership


def test_add_hands_one_array_to_both_inputs_and_neither_sum_writes_into_it():
    """Add's VJP returns g for both inputs; a's later term must not be added into b's pending array (b.grad 2)."""
    a, b = _leaf([1.0]), _leaf([1.0])
    s = a + b  # its VJP hands the same g to a and to b, as their first terms
    loss = (s * 1.0).sum() + (a * 1.0).sum() + (b * 1.0).sum()
    loss.backward()
    np.testing.assert_array_equal(a.grad, [2.0])
    np.testing.assert_array_equal(b.grad, [2.0])


def test_the_ownership_flag_decides_in_place_sums():
    """_Grad adds in place only into an array it allocated itself, never into the first term handed to it."""
    first, second, third = np.ones(3), np.full(3, 2.0), np.full(3, 3.0)
    acc = engine._Grad(first, second)
    assert not np.shares_memory(acc.dense, first) and acc.mine
    np.testing.assert_array_equal(first, [1.0, 1.0, 1.0])
    own = acc.dense
    acc.add(third)
    assert acc.dense is own  # the engine's own array: summed in place
    np.testing.assert_array_equal(acc.dense, [6.0, 6.0, 6.0])
    np.testing.assert_array_equal(second, [2.0, 2.0, 2.0])


def test_a_leaf_keeps_an_owned_sum_without_a_copy_and_copies_a_borrowed_one():
    x = _leaf([1.0, 2.0])
    g = np.ones(2)
    y = x * 1.0
    y.backward(g)  # x's only term is a fresh array from Mul, but the engine did not allocate it: copied
    assert not np.shares_memory(x.grad, g)
    w = _leaf([1.0, 2.0])
    (w * 2.0 + w * 3.0).sum().backward()
    np.testing.assert_array_equal(w.grad, [5.0, 5.0])


# ------------------------------------------------------------------------------------------------ threads


def _in_thread(fn):
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # pragma: no cover - reported below
            out["error"] = e

    th = threading.Thread(target=run)
    th.start()
    th.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_new_thread_starts_with_grad_enabled_and_no_scope():
    x = _leaf([1.0])
    with no_grad(), scope("main"):
        assert not tl.is_grad_enabled()
        y = _in_thread(lambda: (tl.is_grad_enabled(), engine.current_scope(), (x * 2.0).requires_grad))
        z = x * 2.0
    assert y == (True, (), True)
    assert not z.requires_grad


def test_no_grad_in_one_thread_does_not_stop_recording_in_another():
    x = _leaf([1.0])
    inside, release, results = threading.Event(), threading.Event(), {}

    def quiet():
        with no_grad():
            inside.set()
            release.wait(5)
            results["quiet"] = (x * 2.0).requires_grad

    th = threading.Thread(target=quiet)
    th.start()
    inside.wait(5)
    results["main"] = (x * 2.0).requires_grad  # recorded while the other thread sits in no_grad
    release.set()
    th.join()
    assert results == {"quiet": False, "main": True}


def test_interleaved_no_grad_exits_leave_every_thread_as_it_was():
    """Two threads leaving no_grad in the opposite order used to leave the process grad-disabled for good."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a():
        with no_grad():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b():
        a_in.wait(5)
        with no_grad():
            b_in.set()
            a_out.wait(5)

    ts = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert tl.is_grad_enabled()
    assert _in_thread(tl.is_grad_enabled)


def test_scope_in_one_thread_does_not_tag_another_threads_ops():
    x = _leaf([1.0])
    ready, done, out = threading.Event(), threading.Event(), {}

    def tagged():
        with scope("other"):
            ready.set()
            done.wait(5)

    th = threading.Thread(target=tagged)
    th.start()
    ready.wait(5)
    out["scope"] = (x * 2.0).grad_fn.scope
    done.set()
    th.join()
    assert out["scope"] == ()


def test_the_random_stream_is_process_wide():
    tl.manual_seed(3)
    here = Tensor.randn(3).data
    tl.manual_seed(3)
    there = _in_thread(lambda: Tensor.randn(3).data)
    np.testing.assert_array_equal(here, there)


def test_manual_seed_takes_any_python_int():
    for seed in (0, 2**64 + 5, -7, 10**30):
        tl.manual_seed(seed)
        a = Tensor.randn(2).data
        tl.manual_seed(seed)
        np.testing.assert_array_equal(a, Tensor.randn(2).data)
    tl.manual_seed(-7)
    neg = Tensor.randn(2).data
    tl.manual_seed(7)
    assert not np.array_equal(neg, Tensor.randn(2).data)
    with pytest.raises(TypeError, match="manual_seed: seed must be an int"):
        tl.manual_seed(1.5)


# ------------------------------------------------------------------------------------------------ versions


def test_an_optimizer_step_between_forward_and_backward_is_an_error_not_a_wrong_gradient():
    tl.manual_seed(0)
    lin = nn.Linear(3, 2)
    opt = optim.SGD(lin.parameters(), lr=0.5)
    x = Tensor.randn(4, 3, requires_grad=True)
    loss = (lin(x) ** 2).sum()
    loss.backward(retain_graph=True)
    opt.step()  # writes lin.weight's data in place: the graph saved it
    with pytest.raises(
        RuntimeError,
        match=r"LinearBackward.*input 1 \('weight', shape \(2, 3\)\).*version (\d+) when recorded, (?!\1)\d+ now",
    ):
        loss.backward()


def test_in_place_write_to_a_saved_input_is_caught_and_to_an_unsaved_one_is_fine():
    x = Tensor(np.array([1.0, 2.0]))
    w = _leaf([3.0, 4.0])
    y = (w * x).sum()  # Mul saves x
    z = (w + x).sum()  # Add saves nothing
    x += 1.0
    assert x._version == 1
    with pytest.raises(RuntimeError, match=r"MulBackward.*modified in place.*version 0 when recorded, 1 now"):
        y.backward()
    w.grad = None
    z.backward()
    np.testing.assert_array_equal(w.grad, [1.0, 1.0])


def test_writing_through_a_detached_alias_is_caught():
    w = _leaf([0.5, -0.5])
    h = w.tanh()  # Tanh saves its output
    alias = h.detach()
    loss = h.sum()  # Sum saves nothing: only Tanh's check can see the write
    alias.zero_()
    with pytest.raises(RuntimeError, match=r"TanhBackward.*its output"):
        loss.backward()
    v = _leaf([1.0, 2.0])
    frozen = v.detach()
    y = (v * frozen).sum()  # saves frozen, which shares v's data and version counter
    with no_grad():
        v -= 1.0
    with pytest.raises(RuntimeError, match="MulBackward"):
        y.backward()


def test_an_intermediate_saved_by_its_consumer_is_checked_through_the_detaching_op():
    """A node holds no tensors: an intermediate's version is the counter that ``detach`` shares with the alias,
    kept on the op that made it, and a consumer that saved the intermediate reads it from there."""
    w = _leaf([0.5, -0.5])
    for detach_first in (True, False):
        a = w + 1.0  # Add saves nothing
        alias = a.detach() if detach_first else None
        y = (a * w).sum()  # Mul saves a
        if alias is None:
            alias = a.detach()
        del a
        alias += 1.0
        with pytest.raises(RuntimeError, match=r"MulBackward.*its input 0.*version 0 when recorded, 1 now"):
            y.backward()
    # A second detach does not forget a write made through the first alias.
    h = w.tanh()
    first = h.detach()
    first.zero_()
    h.detach()
    with pytest.raises(RuntimeError, match=r"TanhBackward.*its output"):
        h.sum().backward()


def test_version_bumps_for_init_and_load_state_dict():
    lin = nn.Linear(2, 2)
    before = lin.weight._version
    nn.init.zeros_(lin.weight)
    assert lin.weight._version == before + 1
    lin.load_state_dict({k: np.ones(v.shape) for k, v in lin.state_dict().items()})
    assert lin.weight._version == before + 2


def test_bptt_tools_and_optimizers_keep_working():
    tl.manual_seed(1)
    lstm, head = nn.LSTM(2, 4), nn.Linear(4, 1)
    opt = optim.Adam(lstm.parameters() + head.parameters(), lr=1e-2)
    xs, ys = Tensor.randn(12, 3, 2), Tensor.randn(12, 3, 1)

    def model(x, state):
        out, state = lstm(x, state)
        return head(out), state

    losses, _ = bptt.tbptt(model, xs, ys, k=4, loss_fn=nn.functional.mse_loss, optimizer=opt)
    assert len(losses) == 3 and all(np.isfinite(losses))


# ------------------------------------------------------------------------------------------------ in place


def test_in_place_arithmetic_under_no_grad_keeps_the_parameter():
    lin = nn.Linear(3, 2)
    (lin(Tensor.randn(4, 3)) ** 2).sum().backward()
    w, n = lin.weight, len(lin.parameters())
    data, grad = w.data, w.grad.copy()
    before = w.data.copy()
    with no_grad():
        lin.weight -= 0.1 * lin.weight.grad
    assert lin.weight is w and isinstance(w, nn.Parameter) and len(lin.parameters()) == n
    assert w.data is data  # the same array, written in place
    np.testing.assert_allclose(w.data, before - 0.1 * grad)
    assert w._version >= 1


def test_in_place_ops_and_their_errors():
    x = _leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"\+=: a leaf tensor that requires grad.*no_grad"):
        x += 1.0
    y = x * 2.0
    with pytest.raises(RuntimeError, match=r"\*=: cannot change a tensor recorded.*x = x \* y"):
        y *= 2.0
    t = Tensor(np.array([1.0, 2.0, 3.0]))
    t += 1
    t -= Tensor([0.5, 0.5, 0.5])
    t *= 2
    t /= 4
    np.testing.assert_allclose(t.data, [0.75, 1.25, 1.75])
    assert t._version == 4
    t.fill_(7.0)
    np.testing.assert_array_equal(t.data, [7.0, 7.0, 7.0])
    t.copy_(np.array([1.0, 2.0, 3.0]))
    t.zero_()
    np.testing.assert_array_equal(t.data, [0.0, 0.0, 0.0])
    assert t._version == 7
    with pytest.raises(ValueError, match=r"\+=: an operand of shape \(2,\) cannot update a tensor of shape \(3,\)"):
        t += np.ones(2)
    with pytest.raises(ValueError, match=r"copy_: cannot copy a source of shape \(2,\) into shape \(3,\)"):
        t.copy_(np.ones(2))
    i = Tensor(np.array([1, 2]))
    with pytest.raises(TypeError, match=r"/=.*int64"):
        i /= 2


def test_tensor_from_an_ndarray_copies_and_from_numpy_shares():
    a = np.ones(3, np.float32)
    t = Tensor(a, requires_grad=True)
    t.grad = np.ones(3, np.float32)
    optim.SGD([t], lr=1.0).step()
    np.testing.assert_array_equal(a, [1.0, 1.0, 1.0])  # the caller's array is untouched
    s = Tensor.from_numpy(a)
    a[0] = 5.0
    assert s.data[0] == 5.0 and s.dtype == np.float32


# ------------------------------------------------------------------------------------------------ errors


def test_second_backward_says_retain_graph():
    x = _leaf([1.0])
    y = (x * 2.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"a second time.*retain_graph=True"):
        y.backward()


def test_a_state_carried_from_a_freed_graph_says_detach():
    tl.manual_seed(0)
    cell = nn.RNNCell(2, 3)
    h = cell(Tensor.randn(4, 2))
    h.sum().backward()
    h2 = cell(Tensor.randn(4, 2), h)  # the next batch starts from h without detach()
    with pytest.raises(RuntimeError, match=r"earlier backward already freed.*detach\(\).*truncated BPTT"):
        h2.sum().backward()
    h3 = cell(Tensor.randn(4, 2), h.detach())
    h3.sum().backward()  # the fix works


def test_a_hook_returning_a_wrong_shape_or_dtype_is_named():
    x = _leaf([1.0, 2.0])
    h = x * 2.0
    h.name = "hidden"

    def widen(g):
        return np.ones(3)

    h.register_hook(widen)
    with pytest.raises(RuntimeError, match=r"hook .*widen registered on the tensor 'hidden'.*shape \(3,\)"):
        h.sum().backward()
    y = _leaf([1.0, 2.0]) * 1.0
    y.register_hook(lambda g: g.astype(np.float32))
    with pytest.raises(RuntimeError, match=r"returned shape \(2,\), dtype float32.*dtype float64"):
        y.sum().backward()


def test_hook_handles_remove_and_hooks_may_return_tensors():
    x = _leaf([1.0, 2.0])
    y = x * 1.0
    handle = y.register_hook(lambda g: Tensor(g * 3.0))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])
    handle.remove()
    handle.remove()  # twice is fine
    x.grad = None
    y2 = x * 1.0
    y2.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])


def test_seed_gradient_takes_the_roots_dtype_and_grads_in_the_inputs_shapes():
    x = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    b = Tensor(np.ones(3, np.float32), requires_grad=True)
    y = (x + b).sum()
    seen = []
    y.register_hook(lambda g: seen.append(g.dtype))
    y.backward(retain_graph=True)
    assert seen == [np.float32]
    add = y.grad_fn.parents[0]
    assert [g.shape for g in add.grads_in] == [(2, 3), (3,)]


def test_backward_from_several_roots():
    x = _leaf([1.0, 2.0])
    a, b = x * 3.0, (x * x).sum()
    tl.backward([a, b], [np.array([1.0, 0.5]), None])
    np.testing.assert_allclose(x.grad, [3.0 + 2.0, 1.5 + 4.0])
    with pytest.raises(ValueError, match="one gradient per tensor"):
        tl.backward([x * 1.0], [None, None])
