"""BLAS threads: set/get through threadpoolctl, the import-time default and its environment overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import tinygrad_lstm as tl
from tinygrad_lstm import threads

ROOT = Path(__file__).resolve().parent.parent
HAS_BLAS = any(lib.get("user_api") == "blas" for lib in threadpool_info())
needs_blas = pytest.mark.skipif(not HAS_BLAS, reason="numpy's BLAS is not one threadpoolctl can control here")


def _blas_counts() -> list[int]:
    return [int(lib["num_threads"]) for lib in threadpool_info() if lib.get("user_api") == "blas"]


@pytest.fixture
def restore_threads():
    before = tl.get_num_threads()
    yield
    tl.set_num_threads(before)


@needs_blas
def test_set_and_get_reach_the_blas_library(restore_threads) -> None:
    tl.set_num_threads(2)
    assert tl.get_num_threads() == 2 and _blas_counts() == [2] * len(_blas_counts())
    tl.set_num_threads(1)
    assert tl.get_num_threads() == 1 and set(_blas_counts()) == {1}
    a = np.random.default_rng(0).standard_normal((64, 64))
    np.testing.assert_allclose(a @ a.T, (a @ a.T).T)  # BLAS still computes after the switch
    assert "set_num_threads" in threads.policy()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_set_num_threads_refuses_what_is_not_a_positive_int(bad) -> None:
    with pytest.raises(ValueError, match="set_num_threads: n must be an int >= 1"):
        tl.set_num_threads(bad)


def _import_and_report(env_update: dict[str, str | None]) -> subprocess.CompletedProcess:
    """A fresh interpreter importing this checkout with the given environment; prints the threads and policy."""
    env = {k: v for k, v in os.environ.items() if k != threads.ENV_VAR and k not in threads.BLAS_ENV_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update({k: v for k, v in env_update.items() if v is not None})
    code = "import tinygrad_lstm as tl; print(tl.get_num_threads()); print(tl.threads.policy())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


@needs_blas
@pytest.mark.parametrize(
    ("env", "threads_seen", "policy_says"),
    [
        ({}, 1, "tinygrad_lstm's default"),
        ({threads.ENV_VAR: "2"}, 2, f"{threads.ENV_VAR}=2"),
        ({"OPENBLAS_NUM_THREADS": "2"}, 2, "OPENBLAS_NUM_THREADS=2"),  # the user's own setting is kept
        ({"OMP_NUM_THREADS": "2"}, 2, "OMP_NUM_THREADS=2"),
    ],
)
def test_import_time_default_and_overrides(env, threads_seen, policy_says) -> None:
    done = _import_and_report(env)
    assert done.returncode == 0, done.stderr
    count, policy = done.stdout.splitlines()[:2]
    assert int(count) == threads_seen and policy_says in policy


@needs_blas
def test_blas_keeps_the_librarys_own_default() -> None:
    done = _import_and_report({threads.ENV_VAR: "blas"})
    assert done.returncode == 0, done.stderr
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count, policy = done.stdout.splitlines()[:2]
    assert int(count) == min(cores, 64) and "=blas" in policy  # OpenBLAS's default: one thread per core


def test_a_bad_environment_value_fails_the_import_clearly() -> None:
    done = _import_and_report({threads.ENV_VAR: "many"})
    assert done.returncode != 0 and f"{threads.ENV_VAR} must be a positive integer or 'blas', got 'many'" in done.stderr


def test_the_engine_does_not_import_the_threads_module() -> None:
    # Dependencies go one way: the policy lives beside the package, the engine knows nothing of it.
    for name in ("ops", "engine", "tensor"):
        text = (ROOT / "tinygrad_lstm" / f"{name}.py").read_text()
        assert "from .threads" not in text and "import threads" not in text and "threadpoolctl" not in text


def test_bench_threads_quick_runs() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_threads.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    rows = [ln for ln in done.stdout.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    # Three workloads (two cell sizes, the char-LSTM step), idle and loaded.
    assert len(rows) == 6 and {r.split("|")[2].strip() for r in rows} == {"idle", "loaded"}
    for row in rows:
        medians = [float(c.split()[0]) for c in row.strip("|").split("|")[2:4] if c.strip()[:1].isdigit()]
        assert medians and all(m > 0 for m in medians)
    assert "load average after" in done.stdout


def test_without_threadpoolctl_the_import_works_and_set_says_what_is_missing() -> None:
    code = (
        "import sys; sys.modules['threadpoolctl'] = None\n"  # makes `import threadpoolctl` fail
        "import tinygrad_lstm as tl\n"
        "print(tl.threads.policy())\n"
        "try:\n    tl.set_num_threads(2)\nexcept RuntimeError as e:\n    print(e)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    env.pop(threads.ENV_VAR, None)
    for v in threads.BLAS_ENV_VARS:
        env.pop(v, None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    policy, error = done.stdout.splitlines()[:2]
    assert policy.startswith("BLAS threads not changed") and "pip install threadpoolctl" in policy
    assert error == "set_num_threads: needs the threadpoolctl package (pip install threadpoolctl)"
