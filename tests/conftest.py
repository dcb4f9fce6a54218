"""Shared fixtures: every test starts from, and leaves behind, the engine's default global state."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tinygrad_lstm import engine as _engine


@pytest.fixture(autouse=True)
def _restore_engine_state() -> Iterator[None]:
    """Put back the default dtype, grad mode, anomaly mode, scope and RNG whatever a test did to them.

    A test that calls ``set_default_dtype`` (or fails inside ``no_grad``) must not change what later tests see.
    """
    m, d = _engine._modes, _engine._defaults
    saved = (d.dtype, d.rng, m.grad_enabled, m.anomaly, m.scope)
    yield
    d.dtype, d.rng, m.grad_enabled, m.anomaly, m.scope = saved


@pytest.fixture
def np_rng() -> np.random.Generator:
    """A fixed-seed numpy generator for test data."""
    return np.random.default_rng(1234)
