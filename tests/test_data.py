"""The built-in tasks: shapes, dtypes, and that the targets are what the docstrings say."""

import numpy as np
import pytest

from tinygrad_lstm.data import adding_problem, sine_waves


def test_sine_targets_are_next_values():
    x, y = sine_waves(5, 30, rng=np.random.default_rng(0))
    assert x.shape == y.shape == (30, 5, 1)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[1:], y[:-1], atol=1e-6)  # no noise: input at t+1 is the target at t


def test_sine_noise_and_dtype():
    x, y = sine_waves(3, 20, noise=0.1, rng=np.random.default_rng(1), dtype=np.float64)
    assert x.dtype == y.dtype == np.float64
    assert np.abs(x[1:] - y[:-1]).max() > 1e-3


def test_adding_problem_sums_marked_values():
    x, y = adding_problem(64, 50, rng=np.random.default_rng(2))
    assert x.shape == (50, 64, 2) and y.shape == (64, 1)
    marks = x[:, :, 1]
    np.testing.assert_array_equal(marks.sum(axis=0), 2)
    assert (marks[:25].sum(axis=0) == 1).all() and (marks[25:].sum(axis=0) == 1).all()
    np.testing.assert_allclose((x[:, :, 0] * marks).sum(axis=0), y[:, 0], rtol=1e-6)


@pytest.mark.parametrize("fn", [sine_waves, adding_problem])
def test_bad_sizes_raise(fn):
    with pytest.raises(ValueError, match=fn.__name__):
        fn(0, 10)
    with pytest.raises(ValueError, match="T must be"):
        fn(2, 0)
