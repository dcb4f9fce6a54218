"""Smoke tests of four examples: each runs its --quick path end to end and must learn something measurable.

The examples are scripts, not a package: they are loaded from ``examples/`` by path. Every test asserts on the
metrics ``main`` returns (losses that must fall, accuracies above chance) and that the pictures are real PNGs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from example_helpers import assert_pngs, load_example

# ------------------------------------------------------------------------------------------------ fc_classifier


def test_fc_classifier_quick_learns_and_draws(tmp_path: Path) -> None:
    mod = load_example("fc_classifier")
    m = mod.main(["--quick", "--out", str(tmp_path), "--seed", "1"])
    assert m["train_loss_final"] < 0.6 * m["train_loss_first"]
    assert m["val_accuracy"] > 0.8  # chance is 0.5 on balanced moons
    assert_pngs(m["pictures"], 1)
    assert Path(m["pictures"][0]).parent == tmp_path


def test_fc_classifier_compare_init_with_regularisers(tmp_path: Path) -> None:
    mod = load_example("fc_classifier")
    argv = ["--quick", "--out", str(tmp_path), "--compare-init", "--dataset", "circles", "--activation", "tanh"]
    argv += ["--batchnorm", "--dropout", "0.1", "--l1", "1e-4", "--l2", "1e-3"]
    m = mod.main(argv)
    assert set(m["runs"]) == {"xavier", "he"}
    for run in m["runs"].values():
        assert len(run["train_loss_curve"]) == 150
        assert all(math.isfinite(v) for v in run["train_loss_curve"])
        assert run["train_loss_final"] < run["train_loss_first"]
    # The two inits start from different weights, so their curves differ.
    assert m["runs"]["xavier"]["train_loss_curve"] != m["runs"]["he"]["train_loss_curve"]
    assert_pngs(m["pictures"], 1)


@pytest.mark.parametrize("kind", ["moons", "circles"])
def test_fc_classifier_datasets_are_balanced_and_shaped(kind: str) -> None:
    mod = load_example("fc_classifier")
    x, y = mod.make_dataset(kind, 101, 0.1, np.random.default_rng(0))
    assert x.shape == (101, 2) and y.shape == (101,)
    assert set(np.unique(y)) == {0.0, 1.0}
    assert abs(int(y.sum()) - 50) <= 1


def test_fc_classifier_bad_arguments_exit_cleanly(tmp_path: Path) -> None:
    mod = load_example("fc_classifier")
    for bad in (["--hidden", "8,x"], ["--dropout", "1.5"], ["--l2", "-1"]):
        with pytest.raises(SystemExit):
            mod.main([*bad, "--out", str(tmp_path)])


# ------------------------------------------------------------------------------------------------ sine_forecast


def test_sine_forecast_quick_all_cells(tmp_path: Path) -> None:
    mod = load_example("sine_forecast")
    m = mod.main(["--quick", "--out", str(tmp_path)])
    assert list(m["cells"]) == ["rnn", "lstm", "gru"]
    for cell, c in m["cells"].items():
        assert c["train_loss_final"] < c["train_loss_first"], cell
        assert math.isfinite(c["free_run_mse"]) and c["free_run_mse"] >= 0, cell
    # At least the best cell beats "copy the last value" at one step, even after a few seconds of training.
    assert min(c["val_mse"] for c in m["cells"].values()) < m["persistence_mse"]
    assert_pngs(m["pictures"], 2)


def test_sine_forecast_free_run_shapes_and_cell_choice(tmp_path: Path) -> None:
    mod = load_example("sine_forecast")
    model = mod.Forecaster("lstm", 8)
    warm = np.zeros((5, 3, 1), np.float32)
    assert mod.free_run(model, warm, 7).shape == (7, 3, 1)
    with pytest.raises(SystemExit):
        mod.main(["--cells", "lstm,transformer", "--out", str(tmp_path)])


# ------------------------------------------------------------------------------------------------ char_lstm


def test_char_lstm_quick_trains_samples_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mod = load_example("char_lstm")
    m = mod.main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "The Zen of Python" not in out.split("--- sample")[0]  # importing `this` printed nothing
    assert m["train_bpc_last_epoch"] < m["train_bpc_first_epoch"]
    assert m["train_bpc"] < m["uniform_bpc"]  # learned more than a uniform guess
    assert m["sample"].startswith("The Zen of") and len(m["sample"]) == len("The Zen of") + 60
    assert_pngs(m["pictures"], 1)
    ckpt = Path(m["checkpoint"])
    assert ckpt.is_file()

    # Resuming continues the epoch count from the checkpoint and starts from the trained weights.
    m2 = mod.main(["--quick", "--out", str(tmp_path / "again"), "--resume", str(ckpt), "--epochs", "2"])
    assert m2["epoch"] == m["epoch"] + 2
    assert m2["val_bpc_before"] == pytest.approx(m["val_bpc"], rel=1e-5)


def test_char_lstm_custom_text_and_vocab_checks(tmp_path: Path) -> None:
    mod = load_example("char_lstm")
    text = tmp_path / "abc.txt"
    text.write_text("abcabcabcabc " * 40, encoding="utf-8")
    m = mod.main(["--quick", "--text", str(text), "--out", str(tmp_path / "o"), "--prime", "ab"])
    assert m["vocab_size"] == 4
    assert set(m["sample"]) <= set("abc ")
    # A periodic text: the held-out tail is predicted from context, better than from character frequencies.
    assert m["val_bpc"] < m["unigram_bpc"] - 0.2 < m["uniform_bpc"]
    # A checkpoint trained on the Zen does not fit a 4-character vocabulary, and says so.
    zen = mod.main(["--quick", "--epochs", "1", "--out", str(tmp_path / "z"), "--sample-len", "0"])
    with pytest.raises(SystemExit, match="different vocabulary"):
        mod.main(["--quick", "--text", str(text), "--resume", zen["checkpoint"], "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="not in the vocabulary"):
        mod.main(["--quick", "--text", str(text), "--prime", "xyz", "--epochs", "1", "--out", str(tmp_path / "p")])


def test_char_lstm_streams_are_contiguous_pieces() -> None:
    mod = load_example("char_lstm")
    ids = np.arange(23)
    x, y = mod.streams(ids, 4)
    assert x.shape == y.shape == (5, 4)
    np.testing.assert_array_equal(x[:, 1], np.arange(5, 10))  # stream 1 continues one passage
    np.testing.assert_array_equal(y, x + 1)  # the target is the next character


# ------------------------------------------------------------------------------------ sequence_classification


def test_sequence_classification_quick_beats_chance(tmp_path: Path) -> None:
    mod = load_example("sequence_classification")
    m = mod.main(["--quick", "--out", str(tmp_path)])
    assert m["chance"] == pytest.approx(0.25)
    assert m["train_loss_final"] < m["train_loss_first"]
    assert m["val_accuracy"] > m["chance"] + 0.15
    # Without memory the task is at chance: the marked symbol is not visible at the last step.
    assert abs(m["memoryless_val_accuracy"] - m["chance"]) < 0.1
    assert_pngs(m["pictures"], 1)


def test_sequence_classification_task_labels_the_marked_symbol() -> None:
    mod = load_example("sequence_classification")
    x, y = mod.marked_symbol_task(50, 10, 3, 4, 0.0, np.random.default_rng(0))
    assert x.shape == (10, 50, 4) and y.shape == (50,)
    marks = x[:, :, 3]
    assert (marks.sum(axis=0) == 1).all() and (marks[4:] == 0).all()  # one mark, in the first 4 steps
    where = marks.argmax(axis=0)
    np.testing.assert_array_equal(x[where, np.arange(50), :3].argmax(axis=1), y)


def test_sequence_classification_model_is_two_stacked_lstms() -> None:
    mod = load_example("sequence_classification")
    import tinygrad_lstm.nn as nn

    model = mod.StackedLSTMClassifier(5, 4)
    assert isinstance(model.lstm1, nn.LSTM) and isinstance(model.lstm2, nn.LSTM)
    assert (model.lstm1.hidden_size, model.lstm2.input_size, model.lstm2.hidden_size) == (128, 128, 64)
    p = model.predict_proba(np.zeros((6, 2, 5), np.float32))
    assert p.shape == (2, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
