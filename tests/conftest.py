"""Shared fixtures: every test starts from, and leaves behind, the engine's default global state."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tinygrad_lstm import tensor as _tensor


@pytest.fixture(autouse=True)
def _restore_engine_state() -> Iterator[None]:
    """Put back the default dtype, grad mode, anomaly mode, scope and RNG whatever a test did to them.

    A test that calls ``set_default_dtype`` (or fails inside ``no_grad``) must not change what later tests see.
    """
    s = _tensor._state
    saved = (s.default_dtype, s.grad_enabled, s.anomaly, s.scope, s.rng)
    yield
    s.default_dtype, s.grad_enabled, s.anomaly, s.scope, s.rng = saved


@pytest.fixture
def np_rng() -> np.random.Generator:
    """A fixed-seed numpy generator for test data."""
    return np.random.default_rng(1234)
