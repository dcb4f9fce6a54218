"""examples/online_learning.py in --quick mode: five gradient methods train the same net; their numbers hold up."""

from __future__ import annotations

import numpy as np
import pytest
from example_helpers import assert_png, load_example


def test_online_learning_quick(tmp_path):
    m = load_example("online_learning").main(["--quick", "--out", str(tmp_path)])
    hists = m["hists"]
    assert list(hists) == ["bptt", "tbptt:4", "rtrl", "uoro", "snap1"]
    # RTRL's gradient is BPTT's, so its training is BPTT's
    np.testing.assert_allclose(hists["rtrl"]["cosine"], 1.0, atol=1e-9)
    np.testing.assert_allclose(hists["rtrl"]["val_mse"], hists["bptt"]["val_mse"], rtol=1e-6)
    assert min(hists["tbptt:4"]["cosine"]) < 1 - 1e-6  # truncation drops paths
    assert np.std(hists["uoro"]["cosine"]) > np.std(hists["snap1"]["cosine"])  # UORO's variance
    for name, h in hists.items():
        assert np.all(np.isfinite(h["val_mse"])) and h["ms_per_step"] > 0, name
        assert h["val_mse"][-1] < h["val_mse"][0], name  # every method learns something from the start
    assert set(m["cost"]) == set(hists) and all(len(v) == 2 for v in m["cost"].values())
    assert_png(m["paths"][0], min_bytes=20_000)


def test_online_learning_rejects_bad_arguments(tmp_path):
    mod = load_example("online_learning")
    for argv in (["--steps", "3"], ["--cost-hidden", "a"], ["--lr", "0"], ["--updates", "0"]):
        with pytest.raises(SystemExit) as exc:
            mod.main([*argv, "--quick", "--out", str(tmp_path)])
        assert exc.value.code == 2, argv
