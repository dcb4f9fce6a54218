"""Jacobian spectra: ||dh_T/dh_t||_2 by the power (block Krylov) method, and Lyapunov exponents by the QR method."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_bptt import LinearRNNCell  # h_t = W h_{t-1} + U x_t, optionally through tanh: a custom cell

from tinygrad_lstm import Tensor, bptt, manual_seed, nn
from tinygrad_lstm.nn import Module, Parameter

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


class TwoPartCell(Module):
    """A custom cell with a tuple state (h, c): h' = tanh(A h + c + U x), c' = d * c (d elementwise)."""

    def __init__(self, A: np.ndarray, d: np.ndarray, U: np.ndarray) -> None:
        self.A, self.d, self.U = Parameter(A), Parameter(d), Parameter(U)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        return (h @ self.A.T + c + x @ self.U.T).tanh(), c * self.d


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _cells(H: int, I: int) -> dict[str, Module]:
    manual_seed(0)
    rng = _rng(5)
    return {
        "rnn": nn.RNNCell(I, H, dtype=np.float64),
        "lstm": nn.LSTMCell(I, H, dtype=np.float64),
        "gru": nn.GRUCell(I, H, dtype=np.float64),
        "custom": LinearRNNCell(rng.standard_normal((H, H)) * 0.7, rng.standard_normal((H, I)), tanh=True),
    }


# ------------------------------------------------------------------------------------------------ power method


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "custom"])
def test_power_method_matches_exact_norms(kind):
    H, I, T, B = 12, 3, 10, 3
    cell = _cells(H, I)[kind]
    xs = _rng(1).standard_normal((T, B, I))
    h0 = 0.3 * _rng(2).standard_normal((B, H))
    state = (h0, 0.3 * _rng(3).standard_normal((B, H))) if kind == "lstm" else h0
    exact = bptt.jacobian_norms(cell, xs, state, reduce="none")
    power = bptt.jacobian_norms(cell, xs, state, reduce="none", method="power")
    assert power.shape == (T, B)
    np.testing.assert_allclose(power, exact, rtol=1e-4)
    # reductions over the batch as for "exact"
    np.testing.assert_allclose(bptt.jacobian_norms(cell, xs, state, method="power", reduce="max"), exact.max(1), 1e-4)


def test_power_method_on_a_linear_recurrence_gives_norms_of_matrix_powers():
    rng = _rng(4)
    H, T = 20, 15
    W = rng.standard_normal((H, H)) * 0.3
    cell = LinearRNNCell(W, rng.standard_normal((H, 2)))
    got = bptt.jacobian_norms(cell, rng.standard_normal((T, 2, 2)), np.zeros((2, H)), method="power", tol=1e-8)
    want = np.array([np.linalg.norm(np.linalg.matrix_power(W, T - t), 2) for t in range(T)])
    np.testing.assert_allclose(got, want, rtol=1e-7)


def test_power_method_in_float32_and_on_a_larger_lstm():
    manual_seed(1)
    cell = nn.LSTMCell(4, 48)  # float32
    xs = _rng(6).standard_normal((12, 2, 4)).astype(np.float32)
    exact = bptt.jacobian_norms(cell, xs, reduce="none")
    power = bptt.jacobian_norms(cell, xs, reduce="none", method="power")
    np.testing.assert_allclose(power, exact, rtol=1e-4)


def test_power_method_edge_cases():
    rng = _rng(7)
    # one step, one unit: |w| (1 - h^2)
    one = LinearRNNCell(np.array([[0.8]]), np.array([[1.0]]), tanh=True)
    x = np.array([[[0.5]]])
    np.testing.assert_allclose(
        bptt.jacobian_norms(one, x, np.zeros((1, 1)), method="power"), 0.8 * (1 - np.tanh(0.5) ** 2), rtol=1e-12
    )
    # h_T does not depend on the state at all: every norm is 0, for both methods
    U = Tensor(rng.standard_normal((3, 2)))
    blind = lambda x, h: (x @ U.T).tanh()  # noqa: E731
    xs = rng.standard_normal((5, 2, 2))
    for method in ("exact", "power"):
        np.testing.assert_array_equal(bptt.jacobian_norms(blind, xs, np.zeros((2, 3)), method=method), 0.0)


def test_power_method_leaves_the_cell_alone_and_is_deterministic():
    cell = _cells(6, 2)["lstm"]
    cell.weight_hh.grad = np.ones_like(cell.weight_hh.data)
    xs = _rng(8).standard_normal((7, 2))
    a = bptt.jacobian_norms(cell, xs, method="power")
    b = bptt.jacobian_norms(cell, xs, method="power")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(cell.weight_hh.grad, 1.0)
    assert cell.bias_ih.grad is None and all(p.requires_grad for p in cell.parameters())


def test_power_method_warns_when_it_stops_at_max_iter():
    cell = _cells(32, 2)["rnn"]
    xs = _rng(9).standard_normal((8, 1, 2))
    with pytest.warns(RuntimeWarning, match=r"jacobian_norms: the power method had not converged .*max_iter=1"):
        bptt.jacobian_norms(cell, xs, method="power", max_iter=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "svd"}, r"method must be one of 'exact', 'power', got 'svd'"),
        ({"method": None}, r"method must be one of"),
        ({"method": "power", "tol": 0}, r"tol must be a number in \(0, 1\)"),
        ({"method": "power", "tol": 1.5}, r"tol must be a number in \(0, 1\)"),
        ({"method": "power", "tol": "small"}, r"tol must be a number"),
        ({"method": "power", "max_iter": 0}, r"max_iter must be an int >= 1"),
        ({"method": "power", "max_iter": True}, r"max_iter must be an int >= 1"),
        ({"method": "exact", "max_iter": 2.5}, r"max_iter must be an int >= 1"),
        ({"method": "power", "reduce": "sum"}, r"reduce must be 'mean', 'max' or 'none'"),
    ],
)
def test_jacobian_norms_refuses_bad_options(kwargs, match):
    cell = _cells(4, 2)["rnn"]
    with pytest.raises(ValueError, match="jacobian_norms: " + match):
        bptt.jacobian_norms(cell, np.zeros((3, 1, 2)), **kwargs)


def test_power_method_refuses_bad_inputs_like_exact():
    cell = _cells(4, 2)["rnn"]
    with pytest.raises(ValueError, match=r"jacobian_norms: xs must be a numeric \(T, B, I\)"):
        bptt.jacobian_norms(cell, np.zeros(3), method="power")
    with pytest.raises(ValueError, match=r"jacobian_norms: state of shape \(2, 4\) does not match xs"):
        bptt.jacobian_norms(cell, np.zeros((3, 1, 2)), np.zeros((2, 4)), method="power")


def test_bench_jacobian_quick_run():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_jacobian.py"), "--quick", "--cells", "rnn,lstm"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("| rnn |") == 2 and res.stdout.count("| lstm |") == 2
    worst = float(res.stdout.strip().rsplit(" ", 1)[-1])
    assert worst <= 1e-4
    bad = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_jacobian.py"), "--cells", "lstm,tcn"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "tcn" in bad.stderr


# ------------------------------------------------------------------------------------------------ Lyapunov


def _frame(S: int, k: int, seed: int = 0) -> np.ndarray:
    """The start lyapunov_spectrum documents: a QR-orthonormalized standard normal (S, k) draw."""
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((S, k)))[0]


def _qr_reference(jacobians: list[np.ndarray], k: int, seed: int = 0) -> np.ndarray:
    """The QR method in numpy on given step Jacobians (S, S): the spectrum, descending."""
    Q = _frame(jacobians[0].shape[0], k, seed)
    logs = np.zeros(k)
    for J in jacobians:
        Q, R = np.linalg.qr(J @ Q)
        logs += np.log(np.abs(np.diag(R)))
    return np.sort(logs / len(jacobians))[::-1]


def test_scaled_orthogonal_and_orthogonal_recurrences():
    rng = _rng(10)
    H = 7
    Q, _ = np.linalg.qr(rng.standard_normal((H, H)))
    U = rng.standard_normal((H, 2))
    xs = rng.standard_normal((30, 2, 2))
    got = bptt.lyapunov_spectrum(LinearRNNCell(0.9 * Q, U), xs, np.zeros((2, H)))
    assert got.shape == (H,)
    np.testing.assert_allclose(got, np.log(0.9), atol=1e-12)
    np.testing.assert_allclose(
        bptt.lyapunov_spectrum(LinearRNNCell(0.9 * Q, U), xs, np.zeros((2, H)), k=3), np.log(0.9)
    )
    np.testing.assert_allclose(bptt.lyapunov_spectrum(LinearRNNCell(Q, U), xs, np.zeros((2, H))), 0.0, atol=1e-12)


def test_diagonal_recurrence_gives_the_sorted_log_moduli():
    d = np.array([0.5, -0.95, 0.2, 1.1, -0.7])
    cell = LinearRNNCell(np.diag(d), _rng(11).standard_normal((5, 2)))
    T = 1000
    xs = _rng(12).standard_normal((T, 1, 2))
    want = np.sort(np.log(np.abs(d)))[::-1]
    got = bptt.lyapunov_spectrum(cell, xs, np.zeros(5))
    np.testing.assert_allclose(got, want, atol=10 / T)  # the start biases the average by O(1/T)
    assert np.all(np.diff(got) <= 0)
    # the k largest of them with fewer directions
    np.testing.assert_allclose(bptt.lyapunov_spectrum(cell, xs, np.zeros(5), k=2), want[:2], atol=10 / T)


def test_rnn_cell_matches_a_numpy_qr_reference_per_batch_element():
    manual_seed(2)
    H, I, T, B = 5, 3, 40, 2
    cell = nn.RNNCell(I, H, dtype=np.float64)
    xs = _rng(13).standard_normal((T, B, I))
    got = bptt.lyapunov_spectrum(cell, xs, k=4, reduce="none", seed=3)
    assert got.shape == (B, 4)
    W_ih, W_hh = cell.weight_ih.data, cell.weight_hh.data
    b = cell.bias_ih.data + cell.bias_hh.data
    for i in range(B):
        h, jacs = np.zeros(H), []
        for t in range(T):
            h = np.tanh(W_ih @ xs[t, i] + W_hh @ h + b)
            jacs.append((1 - h**2)[:, None] * W_hh)
        np.testing.assert_allclose(got[i], _qr_reference(jacs, 4, seed=3), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bptt.lyapunov_spectrum(cell, xs, k=4, seed=3), got.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lstm_and_gru_cells_match_a_qr_reference_on_torch_jacobians(kind):
    torch = pytest.importorskip("torch")
    manual_seed(4)
    H, I, T = 4, 3, 25
    ours = (nn.LSTMCell if kind == "lstm" else nn.GRUCell)(I, H, dtype=np.float64)
    ref = (torch.nn.LSTMCell if kind == "lstm" else torch.nn.GRUCell)(I, H).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, name).copy_(torch.from_numpy(getattr(ours, name).data))
    xs = _rng(14).standard_normal((T, I))
    S = 2 * H if kind == "lstm" else H
    state = torch.zeros(S, dtype=torch.float64)
    jacs = []
    for t in range(T):
        x = torch.from_numpy(xs[t])[None]

        def step(s, x=x):
            if kind == "lstm":
                h, c = ref(x, (s[None, :H], s[None, H:]))
                return torch.cat([h[0], c[0]])
            return ref(x, s[None])[0]

        jacs.append(torch.autograd.functional.jacobian(step, state).numpy())
        with torch.no_grad():
            state = step(state)
    got = bptt.lyapunov_spectrum(ours, xs)
    assert got.shape == (S,)
    np.testing.assert_allclose(got, _qr_reference(jacs, S), rtol=1e-9, atol=1e-12)


def test_custom_cell_with_a_tuple_state():
    rng = _rng(15)
    H = 3
    d = np.array([0.9, 0.3, 0.6])
    cell = TwoPartCell(0.2 * rng.standard_normal((H, H)), d, rng.standard_normal((H, 2)))
    T = 400
    xs = rng.standard_normal((T, 1, 2))
    got = bptt.lyapunov_spectrum(cell, xs, (np.zeros((1, H)), np.ones((1, H))))
    assert got.shape == (2 * H,)
    # c' = d * c does not see h, so the c directions' exponents are log d; h's are far smaller (|A| is small
    # and tanh' <= 1): the top three are log 0.9, log 0.6, log 0.3 up to the O(1/T) start bias
    np.testing.assert_allclose(got[:3], np.log([0.9, 0.6, 0.3]), atol=5 / T)
    assert got[3] < np.log(0.3) - 0.1


def test_lyapunov_leaves_the_cell_alone():
    cell = _cells(4, 2)["gru"]
    bptt.lyapunov_spectrum(cell, _rng(16).standard_normal((6, 2)))
    assert all(p.grad is None and p.requires_grad for p in cell.parameters())


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"k": 0}, ValueError, r"k must be an int in 1\.\.8 \(the state size 4 \+ 4\), got 0"),
        ({"k": 9}, ValueError, r"k must be an int in 1\.\.8"),
        ({"k": 2.0}, ValueError, r"k must be an int"),
        ({"k": True}, ValueError, r"k must be an int"),
        ({"reduce": "max"}, ValueError, r"reduce must be 'mean' or 'none'"),
        ({"seed": "a"}, TypeError, r"seed must be an int"),
    ],
)
def test_lyapunov_refuses_bad_options(kwargs, err, match):
    cell = _cells(4, 2)["lstm"]
    with pytest.raises(err, match="lyapunov_spectrum: " + match):
        bptt.lyapunov_spectrum(cell, np.zeros((3, 1, 2)), **kwargs)


def test_lyapunov_refuses_bad_inputs():
    cell = _cells(4, 2)["rnn"]
    with pytest.raises(ValueError, match=r"lyapunov_spectrum: xs must be a numeric \(T, B, I\)"):
        bptt.lyapunov_spectrum(cell, np.zeros((2, 3, 4, 2)))
    with pytest.raises(ValueError, match=r"lyapunov_spectrum: xs needs at least one step"):
        bptt.lyapunov_spectrum(cell, np.zeros((0, 1, 2)))
    with pytest.raises(ValueError, match=r"lyapunov_spectrum: state of shape \(3, 4\) does not match xs"):
        bptt.lyapunov_spectrum(cell, np.zeros((2, 1, 2)), np.zeros((3, 4)))


# ------------------------------------------------------------------------------------------------ figure


def test_compare_and_plot_lyapunov(tmp_path):
    from matplotlib.figure import Figure

    from tinygrad_lstm.bptt.lyapunov_study import compare_lyapunov

    panels = compare_lyapunov(4, 60, forget_biases=(0.0, 3.0))
    assert set(panels) == {"cells", "LSTM forget bias"}
    assert {k: v.shape for k, v in panels["cells"].items()} == {"RNN (tanh)": (4,), "LSTM": (8,), "GRU": (4,)}
    fb = panels["LSTM forget bias"]
    # opening the forget gates slows the contraction of the cell state: the top exponent rises toward 0
    assert fb["forget bias 0"][0] < fb["forget bias 3"][0] < 0.05
    fig = bptt.plot_lyapunov(panels)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [len(ax.get_lines()) for ax in fig.axes] == [4, 3]  # the lines and the zero line
    assert fig._repr_png_()[:8] == PNG
    one = bptt.plot_lyapunov(panels["cells"], title="cells only")
    assert len(one.axes) == 1
    out = bptt.plot_lyapunov(panels, tmp_path / "l.png")
    assert out == tmp_path / "l.png" and out.read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    ("spectra", "match"),
    [
        ({}, "non-empty mapping"),
        ({"a": np.zeros((2, 2))}, "must be a non-empty 1-D array"),
        ({"panel": {}}, "panel 'panel' must be a non-empty mapping"),
    ],
)
def test_plot_lyapunov_refuses_bad_input(spectra, match):
    with pytest.raises(ValueError, match="plot_lyapunov: .*" + match):
        bptt.plot_lyapunov(spectra)


def test_plot_lyapunov_refuses_a_bad_path_before_work(tmp_path):
    with pytest.raises(ValueError, match=r"plot_lyapunov: cannot write .*\.gif"):
        bptt.plot_lyapunov({"a": np.zeros(3)}, tmp_path / "x.gif")


def test_lyapunov_figure_tool_quick(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "l.png"
    tool = str(ROOT / "tools" / "lyapunov_figure.py")
    res = subprocess.run([sys.executable, tool, "--quick", "--out", str(out)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert "forget bias 3" in res.stdout and out.read_bytes()[:8] == PNG
    bad = subprocess.run(
        [sys.executable, tool, "--quick", "--out", str(tmp_path / "x.gif")], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and not (tmp_path / "x.gif").exists()
