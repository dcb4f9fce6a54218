"""BPTT internals: checkpointed BPTT, the flow matrix, truncation bias, the memory study, their figures, the CLI."""

from __future__ import annotations

import argparse
import tracemalloc

import numpy as np
import pytest

from tinygrad_lstm import Tensor, bptt, default_dtype, fork_rng, manual_seed, nn, stack
from tinygrad_lstm.bptt._sequence import SeqData, chunk_bounds, chunked_loss
from tinygrad_lstm.bptt.checkpoint import segment_bounds
from tinygrad_lstm.tensor import get_rng


def _mse(out: Tensor, y: Tensor) -> Tensor:
    d = out - y
    return (d * d).mean()


def _layer(kind: str, I: int = 3, H: int = 4, **kw) -> nn.Module:
    with default_dtype(np.float64):
        return {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](I, H, **kw)


def _data(T: int, B: int, I: int, O: int, seed: int = 0, batch_first: bool = False):
    rng = np.random.default_rng(seed)
    shape_x, shape_y = ((B, T, I), (B, T, O)) if batch_first else ((T, B, I), (T, B, O))
    return rng.standard_normal(shape_x), rng.standard_normal(shape_y)


def _grads(model) -> list[np.ndarray]:
    return [p.grad.copy() for p in model.parameters()]


def _zero(model) -> None:
    for p in model.parameters():
        p.grad = None


class CellLoop(nn.Module):
    """model(x (T, B, I), h) -> (stack of h (T, B, H), h_T), running a bare cell step by step."""

    def __init__(self, cell: nn.Module) -> None:
        self.cell = cell

    def forward(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        hs = []
        for t in range(x.shape[0]):
            h = self.cell(x[t], h)
            hs.append(h)
        return stack(hs), h


# ------------------------------------------------------------------------------------------------ checkpoint_bptt


@pytest.mark.parametrize(
    "kind,kw",
    [
        ("rnn", {}),
        ("lstm", {}),
        ("gru", {}),
        ("gru", {"num_layers": 2}),
        ("rnn", {"bidirectional": True}),
        ("lstm", {"num_layers": 2, "bidirectional": True, "batch_first": True}),
    ],
)
def test_checkpointed_gradients_equal_the_full_backward(kind, kw):
    manual_seed(0)
    model = _layer(kind, **kw)
    D = 2 if kw.get("bidirectional") else 1
    T = 11
    x, y = _data(T, 2, 3, 4 * D, batch_first=kw.get("batch_first", False))
    for segments in (3, 4, T):
        _zero(model)
        loss, final = bptt.checkpoint_bptt(model, x, y, _mse, segments=segments)
        got = _grads(model)
        _zero(model)
        ref, ref_state = chunked_loss(SeqData(model, x, y, "ref"), model, _mse, segment_bounds(T, segments), None)
        ref.backward()
        assert loss == pytest.approx(ref.item(), rel=1e-12)
        for g, p in zip(got, model.parameters()):
            np.testing.assert_allclose(g, p.grad, rtol=1e-10, atol=1e-12)
        for a, b in zip(final if isinstance(final, tuple) else (final,), ref_state if kind == "lstm" else (ref_state,)):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-12)
            assert not a.requires_grad


def test_checkpoint_of_a_causal_layer_is_the_one_call_gradient_and_reaches_the_initial_state():
    manual_seed(1)
    model = _layer("lstm")
    x, y = _data(16, 3, 3, 4)
    h0 = Tensor(np.random.default_rng(2).standard_normal((1, 3, 4)), requires_grad=True)
    c0 = Tensor(np.random.default_rng(3).standard_normal((1, 3, 4)), requires_grad=True)

    def summed(out, t):
        d = out - t
        return (d * d).sum()

    loss, _ = bptt.checkpoint_bptt(model, x, y, summed, state=(h0, c0))  # segments=None: about sqrt(16) = 4
    got, gh, gc = _grads(model), h0.grad.copy(), c0.grad.copy()
    _zero(model)
    h0.grad = c0.grad = None
    out, _ = model(Tensor(x), (h0, c0))
    full = summed(out, Tensor(y))
    full.backward()  # one call over the whole sequence: a sum over steps is the same loss
    assert loss == pytest.approx(full.item(), rel=1e-12)
    for g, p in zip(got, model.parameters()):
        np.testing.assert_allclose(g, p.grad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gh, h0.grad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gc, c0.grad, rtol=1e-10, atol=1e-12)


def test_checkpoint_replays_dropout_masks_and_a_bare_cell_model():
    manual_seed(4)
    model = _layer("gru", num_layers=2, dropout=0.5)
    x, y = _data(9, 2, 3, 4)
    with fork_rng(7):
        bptt.checkpoint_bptt(model, x, y, _mse, segments=3)
        after = get_rng().random()
    got = _grads(model)
    _zero(model)
    with fork_rng(7):
        ref, _ = chunked_loss(SeqData(model, x, y, "ref"), model, _mse, segment_bounds(9, 3), None)
        ref.backward()
        assert get_rng().random() == after  # the stream continues as after one forward pass
    for g, p in zip(got, model.parameters()):
        np.testing.assert_allclose(g, p.grad, rtol=1e-10, atol=1e-12)

    with default_dtype(np.float64):
        loop = CellLoop(nn.RNNCell(3, 4))
    bptt.checkpoint_bptt(loop, x, y, _mse, segments=2)
    got = _grads(loop)
    _zero(loop)
    ref, _ = chunked_loss(SeqData(loop, x, y, "ref"), loop, _mse, segment_bounds(9, 2), None)
    ref.backward()
    for g, p in zip(got, loop.parameters()):
        np.testing.assert_allclose(g, p.grad, rtol=1e-10, atol=1e-12)


def test_checkpoint_keeps_far_less_memory_than_full_backward():
    manual_seed(5)
    model = _layer("lstm", I=2, H=16)
    x, y = _data(256, 4, 2, 16)

    def peak(fn):
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def full():
        out, _ = model(Tensor(x))
        _mse(out, Tensor(y)).backward()

    assert peak(lambda: bptt.checkpoint_bptt(model, x, y, _mse)) < 0.4 * peak(full)


def test_checkpoint_errors_name_the_argument():
    model = _layer("rnn")
    x, y = _data(5, 2, 3, 4)
    with pytest.raises(ValueError, match="segments=6 is more than the T=5"):
        bptt.checkpoint_bptt(model, x, y, _mse, segments=6)
    with pytest.raises(ValueError, match="segments must be a positive int"):
        bptt.checkpoint_bptt(model, x, y, _mse, segments=0)
    with pytest.raises(ValueError, match="ys of shape"):
        bptt.checkpoint_bptt(model, x, y[:4], _mse)
    with pytest.raises(TypeError, match="must return \\(out, state\\)"):
        bptt.checkpoint_bptt(lambda x, s: model(x, s)[0], x, y, _mse)
    with pytest.raises(TypeError, match="one-element Tensor"):
        bptt.checkpoint_bptt(model, x, y, lambda o, t: o - t)
    with pytest.raises(TypeError, match="model must be callable"):
        bptt.checkpoint_bptt(3, x, y, _mse)


# ------------------------------------------------------------------------------------------------ flow_matrix


def test_flow_matrix_of_a_linear_rnn_is_shaped_by_powers_of_w():
    # A ReLU cell whose pre-activations are all positive is linear: h_t = W h_{t-1} + U x_t + b. With the loss
    # L_t = sum_b c . h_t, dL_t/dh_s = (W^T)^(t-s) c for every batch row, so the entry is sqrt(B) ||(W^T)^(t-s) c||.
    rng = np.random.default_rng(0)
    T, B, I, H = 8, 3, 2, 4
    with default_dtype(np.float64):
        cell = nn.RNNCell(I, H, nonlinearity="relu")
    W = rng.uniform(0.05, 0.35, (H, H))
    cell.weight_hh.data[...] = W
    cell.weight_ih.data[...] = rng.uniform(0.1, 1.0, (H, I))
    cell.bias_ih.data[...] = 0.5
    c = rng.standard_normal(H)
    x = rng.uniform(0.0, 1.0, (T, B, I))
    M = bptt.flow_matrix(CellLoop(cell), x, np.zeros((T, B, H)), lambda out, _y: (out * Tensor(c)).sum())
    want = np.zeros((T, T))
    for t in range(T):
        for s in range(t + 1):
            want[t, s] = np.sqrt(B) * np.linalg.norm(np.linalg.matrix_power(W.T, t - s) @ c)
    np.testing.assert_allclose(M, want, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_flow_matrix_matches_pytorch_autograd_on_the_unrolled_cell(kind):
    torch = pytest.importorskip("torch")
    manual_seed(2)
    T, B, I, H = 7, 2, 3, 4
    layer = _layer(kind, I, H)
    x, y = _data(T, B, I, H, seed=3)
    grads_before = [np.full(p.shape, 0.25) for p in layer.parameters()]
    for p, g in zip(layer.parameters(), grads_before):
        p.grad = g
    M = bptt.flow_matrix(layer, x, y, _mse)
    for p, g in zip(layer.parameters(), grads_before):
        assert p.grad is g  # left as it was
    w = {n: torch.tensor(p.data, requires_grad=True) for n, p in layer.named_parameters()}
    w_ih, w_hh, b_ih, b_hh = w["weight_ih_l0"], w["weight_hh_l0"], w["bias_ih_l0"], w["bias_hh_l0"]
    h = torch.zeros(B, H, dtype=torch.float64)
    c = torch.zeros(B, H, dtype=torch.float64)
    hs = []
    for t in range(T):
        gi, gh = torch.tensor(x[t]) @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        if kind == "rnn":
            h = torch.tanh(gi + gh)
        elif kind == "lstm":
            i, f, g, o = (gi + gh).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        else:
            r = torch.sigmoid(gi[:, :H] + gh[:, :H])
            z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
            n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
            h = (1 - z) * n + z * h
        hs.append(h)
    want = np.zeros((T, T))
    for t in range(T):
        L_t = ((hs[t] - torch.tensor(y[t])) ** 2).mean()
        for s, g in enumerate(torch.autograd.grad(L_t, hs[: t + 1], retain_graph=True)):
            want[t, s] = g.norm().item()
    np.testing.assert_allclose(M, want, rtol=1e-9, atol=1e-15)
    assert np.all(np.triu(M, 1) == 0) and np.all(np.diag(M) > 0)


def test_flow_matrix_picks_the_last_layer_and_takes_batch_first():
    manual_seed(3)
    model = _layer("gru", num_layers=2, batch_first=True)
    x, y = _data(6, 2, 3, 4, batch_first=True)
    M = bptt.flow_matrix(model, x, y, _mse)
    M0 = bptt.flow_matrix(model, x, y, _mse, layer=0)
    assert M.shape == M0.shape == (6, 6)
    assert not np.allclose(M, M0)
    # The diagonal of the last layer is the direct gradient of L_t at its own output.
    out, _ = model(Tensor(x))
    for t in range(6):
        o = out[:, t]
        o.retain_grad()
    diag = []
    for t in range(6):
        o = Tensor(out.data[:, t], requires_grad=True)
        _mse(o, Tensor(y[:, t])).backward()
        diag.append(np.linalg.norm(o.grad))
    np.testing.assert_allclose(np.diag(M), diag, rtol=1e-12)


def test_flow_matrix_errors():
    model = _layer("rnn")
    x, y = _data(5, 2, 3, 4)
    with pytest.raises(TypeError, match="must return \\(out, state\\)"):
        bptt.flow_matrix(lambda x, s: model(x, s)[0], x, y, _mse)
    with pytest.raises(ValueError, match="ys of shape"):
        bptt.flow_matrix(model, x, y[:3], _mse)
    with pytest.raises(ValueError, match="ys is None"):
        bptt.flow_matrix(model, x, None, _mse)
    lin = nn.Linear(3, 4, dtype=np.float64)
    with pytest.raises(bptt.NotRecordedError, match="no recurrent layer"):
        bptt.flow_matrix(lambda x, s: (lin(Tensor(x)), s), x, y, _mse)
    with pytest.raises(ValueError, match="does not have the T=5 steps"):
        bptt.flow_matrix(lambda x, s: (model(x, s)[0][-1:], None), x, y, _mse)


# ------------------------------------------------------------------------------------------------ truncation_bias


def test_truncation_bias_matches_pytorch_truncated_and_full_gradients():
    torch = pytest.importorskip("torch")
    manual_seed(6)
    T, B, I, H = 12, 2, 3, 4
    layer = _layer("lstm", I, H)
    x, y = _data(T, B, I, H, seed=4)
    ks = [1, 3, 5, 12, 40]
    res = bptt.truncation_bias(layer, x, y, _mse, ks)
    t_lstm = torch.nn.LSTM(I, H).double()
    t_lstm.load_state_dict({k: torch.tensor(p.data) for k, p in layer.named_parameters()})
    X, Y = torch.tensor(x), torch.tensor(y)

    def truncated(k):
        t_lstm.zero_grad()
        state = None
        for a, b in chunk_bounds(T, k):
            out, state = t_lstm(X[a:b], state)
            ((out - Y[a:b]) ** 2).mean().backward()
            state = tuple(s.detach() for s in state)
        return torch.cat([p.grad.flatten() for p in t_lstm.parameters()]).numpy().copy()

    def full(k):
        t_lstm.zero_grad()
        state, total = None, 0
        for a, b in chunk_bounds(T, k):
            out, state = t_lstm(X[a:b], state)
            total = total + ((out - Y[a:b]) ** 2).mean()
        total.backward()
        return torch.cat([p.grad.flatten() for p in t_lstm.parameters()]).numpy().copy()

    assert set(res) == set(ks)
    for k in ks:
        g_k, g = truncated(k), full(k)
        assert set(res[k]) == {"cosine", "rel_error", "norm_ratio"}
        assert res[k]["cosine"] == pytest.approx(g_k @ g / np.linalg.norm(g_k) / np.linalg.norm(g), rel=1e-9)
        assert res[k]["rel_error"] == pytest.approx(np.linalg.norm(g_k - g) / np.linalg.norm(g), rel=1e-7, abs=1e-12)
        assert res[k]["norm_ratio"] == pytest.approx(np.linalg.norm(g_k) / np.linalg.norm(g), rel=1e-9)
    for k in (12, 40):  # nothing is cut
        assert res[k]["cosine"] == pytest.approx(1.0, abs=1e-12)
        assert res[k]["rel_error"] < 1e-12
    assert res[1]["cosine"] < 0.99  # a cut that matters


def test_truncation_bias_leaves_grads_and_the_stream_alone_and_rejects_bad_windows():
    manual_seed(7)
    model = _layer("gru", num_layers=2, batch_first=True, dropout=0.3)
    x, y = _data(8, 2, 3, 4, batch_first=True)
    marker = [np.full(p.shape, 3.0) for p in model.parameters()]
    for p, m in zip(model.parameters(), marker):
        p.grad = m
    with fork_rng(1):
        res = bptt.truncation_bias(model, x, y, _mse, [2, 8])
        nxt = get_rng().random()
    with fork_rng(1):
        assert get_rng().random() == nxt
    assert all(p.grad is m for p, m in zip(model.parameters(), marker))
    # With dropout the two runs see the same masks: for k = T the gradients are identical.
    assert res[8]["rel_error"] < 1e-12
    for bad, match in (([0], "int >= 1"), ([], "empty"), ([2.5], "int >= 1"), (None, "iterable")):
        with pytest.raises((ValueError, TypeError), match=match):
            bptt.truncation_bias(model, x, y, _mse, bad)
    with pytest.raises(ValueError, match="ys of shape"):
        bptt.truncation_bias(model, x, y[:, :5], _mse, [2])
    with pytest.raises(TypeError, match="must return \\(out, state\\)"):
        bptt.truncation_bias(lambda x, s: model(x, s)[0], x, y, _mse, [2])


# ------------------------------------------------------------------------------------------------ figures, memory, CLI


def test_plot_helpers_return_a_figure_or_write_the_file(tmp_path):
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    M = np.tril(rng.uniform(1e-9, 1.0, (6, 6)))
    figs = [
        bptt.plot_flow_matrix({"a": M, "b": M * 0.5}),
        bptt.plot_truncation_bias(
            {"a": {1: {"cosine": 0.9, "rel_error": 0.3}, 6: {"cosine": 1.0, "rel_error": 0}}}, T=6
        ),
        bptt.plot_param_grads({"W": rng.standard_normal((5, 3, 2)), "norms": np.abs(rng.standard_normal(5))}),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    path = bptt.plot_flow_matrix({"a": M}, tmp_path / "flow.png")
    assert path == tmp_path / "flow.png" and path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="\\(T, T\\)"):
        bptt.plot_flow_matrix({"a": np.ones((2, 3))})
    with pytest.raises(ValueError, match="every entry is zero"):
        bptt.plot_flow_matrix({"a": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="empty"):
        bptt.plot_param_grads({})


def test_memory_study_rows_table_and_figure(tmp_path):
    rows = bptt.measure_bptt_memory([20, 40], hidden=8, batch=2, repeats=2, clock="wall")
    assert [r["T"] for r in rows] == [20, 40] and [r["segments"] for r in rows] == [4, 6]
    for r in rows:
        for m in ("full", "checkpoint"):
            assert len(r[m]["peak_bytes"]) == 2 and min(r[m]["peak_bytes"]) > 0
            assert len(r[m]["seconds"]) == 2 and min(r[m]["seconds"]) >= 0
        assert max(r["checkpoint"]["peak_bytes"]) < min(r["full"]["peak_bytes"])
    table = bptt.format_memory_table(rows)
    assert table.count("\n") == 3 and "| 40 | 6 |" in table
    assert bptt.plot_memory(rows, tmp_path / "m.png").exists()
    with pytest.raises(ValueError, match="clock"):
        bptt.measure_bptt_memory([5], clock="sundial")


def _cli(argv):
    parser = bptt.add_cli_arguments(argparse.ArgumentParser())
    return bptt.run_cli(parser.parse_args(argv))


@pytest.mark.parametrize("study", ["weights", "flow", "truncation", "memory"])
def test_cli_studies_print_a_table_and_write_the_figure(study, tmp_path, capsys):
    out = tmp_path / f"{study}.png"
    extra = ["--lengths", "10,20", "--repeats", "1"] if study == "memory" else ["--cells", "rnn,lstm"]
    assert _cli(["--study", study, "--steps", "8", "--hidden", "4", "--batch", "2", "--out", str(out), *extra]) == 0
    text = capsys.readouterr().out
    assert str(out) in text and out.read_bytes()[:4] == b"\x89PNG"
    if study != "memory":
        assert "RNN" in text and "LSTM" in text


def test_cli_study_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    from tinygrad_lstm.__main__ import main

    for argv in (
        ["--study", "truncation", "--windows", "0,2"],  # refused by the option's type
        ["--study", "memory", "--lengths", "a,b"],
        ["--study", "flow", "--steps", "1"],  # refused by the study (the adding task needs 2 steps)
        ["--study", "weights", "--cells", "lstm,tcn"],
        ["--study", "weights", "--out", str(tmp_path / "x.txt")],
    ):
        assert main(["bptt", *argv, "--out", str(tmp_path / "x.png")][: None if "--out" not in argv else -2]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "tinygrad-lstm bptt" in err and "error: " in err, err
    assert not (tmp_path / "x.png").exists()


def test_memory_tool_quick_run(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}  # this checkout's package, not an installed one
    out = tmp_path / "m.png"
    argv = ["--lengths", "10,20", "--repeats", "1", "--hidden", "8", "--batch", "2", "--out", str(out)]
    res = subprocess.run(
        [sys.executable, str(root / "tools" / "bptt_memory.py"), *argv], capture_output=True, text=True, env=env
    )
    assert res.returncode == 0, res.stderr
    assert "tracemalloc sees numpy's buffers" in res.stdout and "| 20 | 4 |" in res.stdout
    assert out.read_bytes()[:4] == b"\x89PNG"
