"""examples/bptt_internals.py in --quick mode: the four studies run, their numbers hold up, the figures exist."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from example_helpers import assert_pngs, load_example


def test_bptt_internals_quick(tmp_path: Path) -> None:
    m = load_example("bptt_internals").main(["--quick", "--out", str(tmp_path)])
    assert_pngs(m["paths"], 4)
    labels = {"RNN", "LSTM (PyTorch init)", "LSTM (forget bias 3)", "GRU"}
    assert set(m["weights"]) == set(m["flow"]) == set(m["truncation"]) == labels
    for label, norms in m["weights"].items():
        assert norms.shape == (16,) and norms[0] == 0.0, label  # h_{-1} = 0: W_hh's term at t = 0 is zero
        assert norms[-1] > 0, label
    for label, M in m["flow"].items():
        assert M.shape == (10, 10) and np.all(np.triu(M, 1) == 0) and np.all(np.diag(M) > 0), label
    for label, res in m["truncation"].items():
        assert res[16]["cosine"] == pytest.approx(1.0, abs=1e-12), label  # k = T cuts nothing
        assert res[1]["cosine"] < 1.0, label
    for row in m["memory"]:
        assert min(row["checkpoint"]["peak_bytes"]) < min(row["full"]["peak_bytes"])


def test_bptt_internals_rejects_bad_arguments(tmp_path: Path) -> None:
    mod = load_example("bptt_internals")
    for argv in (["--steps", "1"], ["--lengths", "a,b"], ["--hidden", "0"]):
        with pytest.raises(SystemExit) as exc:
            mod.main([*argv, "--quick", "--out", str(tmp_path)])
        assert exc.value.code == 2, argv
