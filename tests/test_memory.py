"""The memory policy: freed graph memory is kept for the next step (glibc), with an opt-out."""

import platform
import subprocess
import sys

import pytest

from tinygrad_lstm import memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# One LSTM training step repeated; after a warm-up, prints the median number of minor page faults per step and
# their total over the five later steps (glibc's dynamic mmap threshold lets some steps under the system policy
# fault little, so the opt-out is judged by the total).
FAULTS_PER_STEP = """
import resource, statistics
import numpy as np
import tinygrad_lstm as tl
from tinygrad_lstm.nn import LSTM
tl.manual_seed(0)
lstm = LSTM(64, 128)
x = tl.Tensor(np.random.default_rng(0).standard_normal((50, 32, 64)).astype(np.float32))
def step():
    out, _ = lstm(x)
    (out * out).mean().backward()
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(tl.memory.policy())
print(int(statistics.median(faults[3:])), sum(faults[3:]))
"""


def _run(env_value: str | None) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if k != memory.ENV_VAR}
    if env_value is not None:
        env[memory.ENV_VAR] = env_value
    return subprocess.run([sys.executable, "-c", FAULTS_PER_STEP], capture_output=True, text=True, env=env)


@pytest.mark.skipif(not GLIBC, reason="the policy only changes glibc's malloc")
def test_default_keeps_freed_memory_and_training_steps_stop_page_faulting():
    done = _run(None)
    assert done.returncode == 0, done.stderr
    policy, faults = done.stdout.split("\n")[:2]
    faults = faults.split()[0]
    assert policy.startswith("glibc keeps freed memory")
    # A step's graph is ~30 MB (about 7,000 pages): with the policy, later steps reuse the first step's memory.
    assert int(faults) < 500, f"{faults} page faults per training step"


@pytest.mark.skipif(not GLIBC, reason="the policy only changes glibc's malloc")
def test_opt_out_leaves_malloc_alone_and_then_steps_fault_their_graph_back_in():
    done = _run("system")
    assert done.returncode == 0, done.stderr
    policy, faults = done.stdout.split("\n")[:2]
    faults = faults.split()[1]
    assert policy == f"system malloc settings ({memory.ENV_VAR}=system)"
    assert int(faults) > 1000  # what the policy is for: glibc handed the graph's memory back to the OS


def test_a_bad_setting_fails_the_import_with_a_clear_error():
    done = _run("sometimes")
    assert done.returncode != 0
    assert f"{memory.ENV_VAR} must be 'keep' (the default) or 'system', got 'sometimes'" in done.stderr


def test_policy_is_described_and_arguments_are_checked():
    assert isinstance(memory.policy(), str) and memory.policy()
    with pytest.raises(ValueError, match="keep_freed_memory: need trim_threshold >= 0"):
        memory.keep_freed_memory(trim_threshold=-1)
    with pytest.raises(ValueError, match="mmap_threshold <= 32 MiB"):
        memory.keep_freed_memory(mmap_threshold=64 << 20)
