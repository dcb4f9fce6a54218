"""Variable-length batches: nn.utils.rnn (pad / pack / unpack) and RNN/LSTM/GRU on a PackedSequence, against
torch's packed sequences (values and every gradient, float64 1e-9), against per-sequence runs without torch,
the projected LSTM (proj_size), and what bptt.record() keeps of a packed batch."""

import numpy as np
import pytest

from tinygrad_lstm import Tensor, bptt
from tinygrad_lstm.nn import GRU, LSTM, RNN, StepRecord
from tinygrad_lstm.nn.rnn import STEP_OBSERVERS
from tinygrad_lstm.nn.utils.rnn import (
    PackedSequence,
    pack_padded_sequence,
    pack_sequence,
    pad_packed_sequence,
    pad_sequence,
    unpack_sequence,
    unpad_sequence,
)

TOL = {"rtol": 1e-9, "atol": 1e-9}
KINDS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def _torch():
    return pytest.importorskip("torch")


def _close(a, b, what):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), err_msg=what, **TOL)


def _states(final):
    return list(final) if isinstance(final, tuple) else [final]


# ------------------------------------------------------------------------------------------- the utilities


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_pad_sequence_matches_torch_with_gradients(batch_first, padding_side):
    torch = _torch()
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((n, 2, 3)) for n in (3, 5, 1)]
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = pad_sequence(ours, batch_first=batch_first, padding_value=-2.5, padding_side=padding_side)
    tout = torch.nn.utils.rnn.pad_sequence(
        theirs, batch_first=batch_first, padding_value=-2.5, padding_side=padding_side
    )
    assert out.shape == tuple(tout.shape)
    _close(out.data, tout.detach().numpy(), "pad_sequence")
    w = rng.standard_normal(out.shape)
    (out * Tensor(w)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    for a, b in zip(ours, theirs):
        _close(a.grad, b.grad.numpy(), "gradient of a padded sequence")


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("lengths,enforce_sorted", [([4, 4, 2, 1], True), ([2, 4, 1, 3], False), ([3, 3, 3], False)])
def test_pack_and_pad_packed_match_torch(batch_first, lengths, enforce_sorted):
    torch = _torch()
    rng = np.random.default_rng(1)
    T, B = max(lengths) + 1, len(lengths)  # one step of pure padding at the end
    shape = (B, T, 3) if batch_first else (T, B, 3)
    x_np = rng.standard_normal(shape)
    x, tx = Tensor(x_np, requires_grad=True), torch.tensor(x_np, requires_grad=True)
    p = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    tp = torch.nn.utils.rnn.pack_padded_sequence(
        tx, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=enforce_sorted
    )
    _close(p.data.data, tp.data.detach().numpy(), "packed data")
    np.testing.assert_array_equal(p.batch_sizes, tp.batch_sizes.numpy())
    for ours, theirs in ((p.sorted_indices, tp.sorted_indices), (p.unsorted_indices, tp.unsorted_indices)):
        if theirs is None:
            assert ours is None
        else:
            np.testing.assert_array_equal(ours, theirs.numpy())
    out, lens = pad_packed_sequence(p, batch_first=batch_first, padding_value=7.0, total_length=T + 1)
    tout, tlens = torch.nn.utils.rnn.pad_packed_sequence(
        tp, batch_first=batch_first, padding_value=7.0, total_length=T + 1
    )
    assert out.shape == tuple(tout.shape) and lens.dtype == np.int64
    _close(out.data, tout.detach().numpy(), "pad_packed_sequence")
    np.testing.assert_array_equal(lens, tlens.numpy())
    w = rng.standard_normal(out.shape)
    (out * Tensor(w)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    _close(x.grad, tx.grad.numpy(), "gradient through pack and unpack")
    # padding positions get exactly no gradient
    mask = np.arange(T)[:, None] < np.asarray(lengths)[None, :]
    pad = ~(mask.T if batch_first else mask)
    assert np.all(x.grad[pad] == 0) and np.any(x.grad[~pad] != 0)


def test_pack_sequence_unpack_and_unpad_round_trip():
    torch = _torch()
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal((n, 2)) for n in (2, 5, 3)]
    p = pack_sequence([Tensor(a) for a in arrays], enforce_sorted=False)
    tp = torch.nn.utils.rnn.pack_sequence([torch.tensor(a) for a in arrays], enforce_sorted=False)
    _close(p.data.data, tp.data.numpy(), "pack_sequence")
    for a, u in zip(arrays, unpack_sequence(p)):
        _close(u.data, a, "unpack_sequence")
    padded = pad_sequence([Tensor(a) for a in arrays], batch_first=True)
    for a, u in zip(arrays, unpad_sequence(padded, [2, 5, 3], batch_first=True)):
        _close(u.data, a, "unpad_sequence")


def test_packing_errors_name_the_function_and_the_argument():
    x = Tensor(np.zeros((4, 3, 2)))
    with pytest.raises(ValueError, match=r"pack_padded_sequence: lengths \[1, 3, 2\] are not in decreasing.*enforce"):
        pack_padded_sequence(x, [1, 3, 2])
    with pytest.raises(ValueError, match="pack_padded_sequence: 2 lengths for a batch of 3"):
        pack_padded_sequence(x, [1, 2])
    with pytest.raises(ValueError, match="must be > 0"):
        pack_padded_sequence(x, [3, 2, 0])
    with pytest.raises(ValueError, match="a length of 5 exceeds the 4 steps"):
        pack_padded_sequence(x, [5, 2, 1])
    with pytest.raises(ValueError, match="1-D sequence of ints"):
        pack_padded_sequence(x, [2.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="total_length must be an int >= the longest length 4"):
        pad_packed_sequence(pack_padded_sequence(x, [4, 2, 1]), total_length=3)
    with pytest.raises(ValueError, match="same trailing shape"):
        pad_sequence([Tensor(np.zeros((2, 3))), Tensor(np.zeros((2, 4)))])
    with pytest.raises(TypeError, match="non-empty list"):
        pad_sequence([])
    with pytest.raises(ValueError, match="batch_sizes sum to 3 rows"):
        pad_packed_sequence(PackedSequence(Tensor(np.zeros((4, 2))), np.array([2, 1])))
    with pytest.raises(ValueError, match="must not increase"):
        LSTM(2, 3, dtype=np.float64)(PackedSequence(Tensor(np.zeros((3, 2))), np.array([1, 2])))
    with pytest.raises(ValueError, match="input_size=2"):
        LSTM(2, 3, dtype=np.float64)(pack_padded_sequence(Tensor(np.zeros((2, 1, 5))), [2]))


# ------------------------------------------------------------------------------------------- layers vs torch

CONFIGS = {
    "1layer": {},
    "2layers": {"num_layers": 2},
    "bidir": {"bidirectional": True},
    "2layers_bidir": {"num_layers": 2, "bidirectional": True},
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("lengths,sorted_", [([5, 2, 4, 1, 4], False), ([5, 4, 4, 2, 1], True)])
@pytest.mark.parametrize("give_state", [False, True])
def test_packed_layers_match_torch(kind, config, lengths, sorted_, give_state):
    torch = _torch()
    kw = CONFIGS[config]
    rng = np.random.default_rng(abs(hash((kind, config, sorted_, give_state))) % 2**32)
    I, H, T, B = 3, 4, max(lengths) + 1, len(lengths)
    tcls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    theirs = tcls(I, H, **kw).double()
    ours = KINDS[kind](I, H, dtype=np.float64, **kw)
    ours.load_state_dict(theirs.state_dict())
    x_np = rng.standard_normal((T, B, I))
    x, tx = Tensor(x_np, requires_grad=True), torch.tensor(x_np, requires_grad=True)
    p = pack_padded_sequence(x, lengths, enforce_sorted=sorted_)
    tp = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), enforce_sorted=sorted_)
    LD = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    s_np = [rng.standard_normal((LD, B, H)) for _ in range(2 if kind == "lstm" else 1)]
    s = [Tensor(a, requires_grad=True) for a in s_np]
    ts = [torch.tensor(a, requires_grad=True) for a in s_np]
    if give_state:
        hx, thx = (tuple(s), tuple(ts)) if kind == "lstm" else (s[0], ts[0])
        out, final = ours(p, hx)
        tout, tfinal = theirs(tp, thx)
    else:
        (out, final), (tout, tfinal) = ours(p), theirs(tp)
    assert isinstance(out, PackedSequence)
    np.testing.assert_array_equal(out.batch_sizes, tout.batch_sizes.numpy())
    _close(out.data.data, tout.data.detach().numpy(), "packed output")
    padded, lens = pad_packed_sequence(out)
    np.testing.assert_array_equal(lens, lengths)
    tpadded, _ = torch.nn.utils.rnn.pad_packed_sequence(tout)
    results, tresults = [padded, *_states(final)], [tpadded, *_states(tfinal)]
    for o, to in zip(results, tresults):
        assert o.shape == tuple(to.shape)
        _close(o.data, to.detach().numpy(), "forward")
    w = [rng.standard_normal(o.shape) for o in results]
    sum((o * Tensor(a)).sum() for o, a in zip(results, w)).backward()
    sum((o * torch.tensor(a)).sum() for o, a in zip(tresults, w)).backward()
    tparams = dict(theirs.named_parameters())
    for k, prm in ours.named_parameters():
        _close(prm.grad, tparams[k].grad.numpy(), f"grad of {k}")
    _close(x.grad, tx.grad.numpy(), "grad of the input")
    mask = np.arange(T)[:, None] < np.asarray(lengths)[None, :]
    assert np.all(x.grad[~mask] == 0)  # padding steps contribute no gradient
    if give_state:
        for a, b in zip(s, ts):
            _close(a.grad, b.grad.numpy(), "grad of the initial state")


@pytest.mark.parametrize("kind", list(KINDS))
def test_packed_batch_equals_each_sequence_run_alone(kind):
    """Without torch: every sequence of a packed, unsorted batch gets what it gets when run on its own, and the
    values in the padding change nothing."""
    rng = np.random.default_rng(5)
    lengths = [2, 5, 3]
    m = KINDS[kind](2, 3, num_layers=2, bidirectional=True, dtype=np.float64)
    x_np = rng.standard_normal((5, 3, 2))
    out, final = m(pack_padded_sequence(Tensor(x_np), lengths, enforce_sorted=False))
    padded, _ = pad_packed_sequence(out, padding_value=np.nan)
    junk = x_np.copy()
    junk[np.arange(5)[:, None] >= np.asarray(lengths)[None, :]] = 1e6
    out2, final2 = m(pack_padded_sequence(Tensor(junk), lengths, enforce_sorted=False))
    _close(pad_packed_sequence(out2)[0].data[~np.isnan(padded.data)], padded.data[~np.isnan(padded.data)], "junk")
    for b, n in enumerate(lengths):
        alone, alone_final = m(Tensor(x_np[:n, b : b + 1]))
        _close(padded.data[:n, b : b + 1], alone.data, f"output of sequence {b}")
        assert np.all(np.isnan(padded.data[n:, b]))
        for f, f2, af in zip(_states(final), _states(final2), _states(alone_final)):
            _close(f.data[:, b : b + 1], af.data, f"final state of sequence {b}")
            _close(f2.data, f.data, "final states do not see the padding")


def test_packed_float32_and_return_states():
    torch = _torch()
    rng = np.random.default_rng(6)
    theirs = torch.nn.GRU(2, 3, bidirectional=True)
    ours = GRU(2, 3, bidirectional=True)
    ours.load_state_dict(theirs.state_dict())
    x = rng.standard_normal((4, 3, 2)).astype(np.float32)
    out, h, states = ours(pack_padded_sequence(Tensor(x), [4, 1, 3], enforce_sorted=False), return_states=True)
    tout, th = theirs(torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), [4, 1, 3], enforce_sorted=False))
    np.testing.assert_allclose(out.data.data, tout.data.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h.data, th.detach().numpy(), rtol=1e-5, atol=1e-5)
    # states[layer][direction][t]: the rows of the sequences that have step t, in sorted order
    assert [s.shape[0] for s in states[0][0]] == [3, 2, 2, 1] == [s.shape[0] for s in states[0][1]]


# ------------------------------------------------------------------------------------------- LSTM(proj_size)


@pytest.mark.parametrize("packed", [False, True])
def test_projected_lstm_matches_torch_and_loads_its_state_dict(packed):
    torch = _torch()
    rng = np.random.default_rng(7)
    I, H, P, T, B = 3, 5, 2, 4, 3
    theirs = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P).double()
    ours = LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P, dtype=np.float64)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert all(ours.state_dict()[k].shape == tuple(v.shape) for k, v in theirs.state_dict().items())
    assert ours.load_state_dict(theirs.state_dict()) == ([], [])  # torch tensors, as is
    assert "proj_size=2" in repr(ours) and repr(ours) == repr(theirs)
    x_np = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((4, B, P)), rng.standard_normal((4, B, H))
    xs = [Tensor(a, requires_grad=True) for a in (x_np, h0, c0)]
    txs = [torch.tensor(a, requires_grad=True) for a in (x_np, h0, c0)]
    if packed:
        out, (h, c) = ours(pack_padded_sequence(xs[0], [2, 4, 3], enforce_sorted=False), (xs[1], xs[2]))
        out = pad_packed_sequence(out)[0]
        tout, (th, tc) = theirs(
            torch.nn.utils.rnn.pack_padded_sequence(txs[0], [2, 4, 3], enforce_sorted=False), (txs[1], txs[2])
        )
        tout = torch.nn.utils.rnn.pad_packed_sequence(tout)[0]
    else:
        out, (h, c) = ours(xs[0], (xs[1], xs[2]))
        tout, (th, tc) = theirs(txs[0], (txs[1], txs[2]))
    assert out.shape == (T, B, 2 * P) and h.shape == (4, B, P) and c.shape == (4, B, H)
    w = [rng.standard_normal(o.shape) for o in (out, h, c)]
    for o, to in zip((out, h, c), (tout, th, tc)):
        _close(o.data, to.detach().numpy(), "forward")
    sum((o * Tensor(a)).sum() for o, a in zip((out, h, c), w)).backward()
    sum((o * torch.tensor(a)).sum() for o, a in zip((tout, th, tc), w)).backward()
    tparams = dict(theirs.named_parameters())
    for k, prm in ours.named_parameters():
        _close(prm.grad, tparams[k].grad.numpy(), f"grad of {k}")
    for a, b in zip(xs, txs):
        _close(a.grad, b.grad.numpy(), "grad of an input")


def test_proj_size_checks():
    with pytest.raises(ValueError, match="proj_size must be smaller than hidden_size"):
        LSTM(2, 3, proj_size=3)
    with pytest.raises(ValueError, match="proj_size must be an integer >= 0"):
        LSTM(2, 3, proj_size=-1)
    m = LSTM(2, 3, proj_size=2, dtype=np.float64)
    with pytest.raises(ValueError, match=r"h0 must have shape \(1, 1, 2\)"):
        m(Tensor(np.zeros((2, 1, 2))), (Tensor(np.zeros((1, 1, 3))), Tensor(np.zeros((1, 1, 3)))))
    with pytest.raises(TypeError):
        GRU(2, 3, proj_size=1)  # as torch's GRU: an LSTM option


# ------------------------------------------------------------------------------------------- bptt.record


def test_record_keeps_only_the_real_steps_of_each_sequence():
    rng = np.random.default_rng(8)
    lengths = [2, 4, 1]
    m = LSTM(2, 3, bidirectional=True, dtype=np.float64)
    x = Tensor(rng.standard_normal((4, 3, 2)))
    with bptt.record() as rec:
        out, _ = m(pack_padded_sequence(x, lengths, enforce_sorted=False))
        padded, _ = pad_packed_sequence(out)
        (padded * padded).sum().backward()
    real = np.arange(4)[:, None] < np.asarray(lengths)[None, :]
    for d in (0, 1):
        h = rec.states("h", direction=d)
        assert h.shape == (4, 3, 3)
        _close(h[real], padded.data[..., 3 * d : 3 * d + 3][real], f"recorded h, direction {d}")
        assert np.all(np.isnan(h[~real])) and np.all(np.isnan(rec.gates("f", direction=d)[~real]))
        g = rec.grads("h", direction=d)
        assert np.all(g[~real] == 0) and np.all(g[real] != 0)
        np.testing.assert_array_equal(rec.times(direction=d), np.arange(4))
    # statistics are over the real steps only: at t=3 only sequence 1 exists
    f = rec.gates("f")
    assert rec.saturation("f", low=0.0, high=f[3, 1].max() - 1e-12)[3] == pytest.approx(1 / 3)
    p = rec.forget_product()
    assert p[3] == 1.0 and np.isfinite(p).all()
    # at t=1 sequences 0 (its last step: factor 1) and 1 (f_2 * f_3) are real; sequence 2 is left out
    assert p[1] == pytest.approx(np.mean([1.0] * 3 + list(f[2:4, 1].prod(axis=0))))


def test_step_record_rows_name_the_sequences_of_each_step():
    records: list[StepRecord] = []
    STEP_OBSERVERS.append(records.append)
    try:
        RNN(2, 3, dtype=np.float64)(pack_padded_sequence(Tensor(np.ones((3, 3, 2))), [1, 3, 2], enforce_sorted=False))
    finally:
        STEP_OBSERVERS.remove(records.append)
    assert [r.rows.tolist() for r in records] == [[1, 2, 0], [1, 2], [1]]
    assert all(r.batch_size == 3 and r.h.shape == (len(r.rows), 3) for r in records)
