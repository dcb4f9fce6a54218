"""Randomized differential test of the engine: random programs of ops, our gradients against PyTorch's.

Each seed builds one program from a menu that stresses how gradients meet: a value feeding many ops, ``x * x``,
a weight shared by many matmuls (also through ``.T``), slices of one tensor joined again by cat/stack, where,
reductions that broadcast back, hooks on intermediates (including a transpose), retained gradients, and a second
backward through a retained graph. The same program runs on our Tensors and on torch's, in float64; every leaf's
``.grad`` and every retained intermediate's must agree to 1e-10. Without torch, hook-free programs are checked
against central finite differences instead.

The seed list is fixed, so a failure names a seed that reproduces it. ``test_detects_broken_accumulation``
shows that the test can fail: with the engine's ownership flag ignored (every sum made in place, into whatever
array came first) several seeds disagree.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_lstm import Tensor, cat, engine, stack, where

SEEDS = list(range(40))
N = (3, 4)  # the shape of every activation; leaves also come in broadcastable shapes


class _Ours:
    """The op menu on our Tensors."""

    def leaf(self, a: np.ndarray):
        return Tensor(a, requires_grad=True)

    tanh = staticmethod(lambda x: x.tanh())
    sigmoid = staticmethod(lambda x: x.sigmoid())
    exp = staticmethod(lambda x: (x * 0.3).exp())
    T = staticmethod(lambda w: w.T)
    cat = staticmethod(lambda xs, axis: cat(xs, axis=axis))
    stack = staticmethod(lambda xs, axis: stack(xs, axis=axis))
    where = staticmethod(lambda c, a, b: where(c, a, b))
    sum = staticmethod(lambda x, axis: x.sum(axis=axis, keepdims=True))
    mean = staticmethod(lambda x, axis: x.mean(axis=axis, keepdims=True))
    max = staticmethod(lambda x, axis: x.max(axis=axis, keepdims=True))

    def hook(self, t, k):
        t.register_hook(lambda g: g * k)

    def grad(self, t):
        return None if t.grad is None else np.asarray(t.grad)

    def backward(self, loss, retain):
        loss.backward(retain_graph=retain)


class _Torch:
    """The same menu on torch tensors (float64)."""

    def __init__(self, torch):
        self.t = torch

    def leaf(self, a):
        return self.t.tensor(a, dtype=self.t.float64, requires_grad=True)

    tanh = staticmethod(lambda x: x.tanh())
    sigmoid = staticmethod(lambda x: x.sigmoid())
    exp = staticmethod(lambda x: (x * 0.3).exp())
    T = staticmethod(lambda w: w.T)

    def cat(self, xs, axis):
        return self.t.cat(xs, dim=axis)

    def stack(self, xs, axis):
        return self.t.stack(xs, dim=axis)

    def where(self, c, a, b):
        return self.t.where(self.t.as_tensor(c), a, b)

    sum = staticmethod(lambda x, axis: x.sum(dim=axis, keepdim=True))
    mean = staticmethod(lambda x, axis: x.mean(dim=axis, keepdim=True))

    def max(self, x, axis):
        return self.t.amax(x, dim=axis, keepdim=True)

    def hook(self, t, k):
        t.register_hook(lambda g: g * k)

    def grad(self, t):
        return None if t.grad is None else t.grad.detach().numpy()

    def backward(self, loss, retain):
        loss.backward(retain_graph=retain)


def _program(seed: int, extras: bool = True) -> list[tuple]:
    """A random list of instructions over a pool of values; each refers to earlier values by index (every
    instruction makes one value, so indices line up). ``extras``: hooks, retained grads, a second backward."""
    rng = np.random.default_rng(seed)
    prog: list[tuple] = []
    shp: list = []  # the shape of each value (None for the weight)
    family = [N, N, (4,), (1, 4), (3, 1), ()]
    for i in range(int(rng.integers(3, 6))):
        shape = N if i < 2 else family[int(rng.integers(0, len(family)))]
        prog.append(("leaf", rng.standard_normal(shape)))
        shp.append(shape)
    prog.append(("leaf", rng.standard_normal((4, 4)) * 0.5))
    shp.append(None)
    w = len(prog) - 1

    def pick(ok: list) -> int:  # mostly one of the latest values, so that most of the program reaches the loss
        return int(ok[-1 - int(rng.integers(0, min(3, len(ok))))] if rng.random() < 0.7 else rng.choice(ok))

    def act() -> int:  # an earlier value, not the weight
        return pick([j for j, s in enumerate(shp) if s is not None])

    def full() -> int:  # an earlier value of shape (3, 4)
        return pick([j for j, s in enumerate(shp) if s == N])

    kinds = [
        "add",
        "add",
        "add",
        "mul",
        "sub",
        "div",
        "square",
        "tanh",
        "sigmoid",
        "exp",
        "matmul",
        "matmul_T",
        "slices",
    ]
    kinds += ["stack", "where", "reduce"]
    for _ in range(int(rng.integers(6, 16))):
        k = kinds[int(rng.integers(0, len(kinds)))]
        if k in ("add", "mul", "sub", "div"):
            a, b = act(), act()
            prog.append((k, a, b))
            shp.append(np.broadcast_shapes(shp[a], shp[b]))
            continue
        if k in ("square", "tanh", "sigmoid", "exp"):
            a = act()
            prog.append((k, a))
            shp.append(shp[a])
            continue
        if k == "matmul":
            prog.append((k, full(), w))
        elif k == "matmul_T":  # the transpose itself may get a hook
            hook = float(rng.choice([0.5, 2.0])) if extras and rng.random() < 0.5 else None
            prog.append((k, full(), w, hook))
        elif k == "slices":
            prog.append((k, full(), int(rng.integers(1, 4))))
        elif k == "stack":
            prog.append((k, full(), full()))
        elif k == "where":
            prog.append((k, rng.random(N) > 0.5, full(), act()))
        else:
            prog.append((k, ["sum", "mean", "max"][int(rng.integers(0, 3))], full(), int(rng.integers(0, 2))))
        shp.append(N)
        if extras and rng.random() < 0.2:
            prog.append(("hook", len(prog) - 1, float(rng.choice([0.5, 2.0, -1.0]))))
            shp.append(shp[-1])
        if extras and rng.random() < 0.2:
            prog.append(("retain", len(prog) - 1))
            shp.append(shp[-1])
    # The loss reads the last value and a few others: a value read by the loss last is the first to get a term in
    # backward, so most values get theirs from the ops above first (as shared arrays, e.g. both inputs of an add).
    coef = rng.standard_normal(len(prog)) * (rng.random(len(prog)) < 0.1)
    coef[-1] = 1.0
    prog.append(("loss", coef))
    prog.append(("twice", extras and bool(rng.random() < 0.3)))
    return prog


def _run(prog: list, B) -> dict:
    """Replay ``prog`` on backend ``B``; return the gradients of every leaf and retained value."""
    vals: list = []
    leaves, retained = [], []
    loss = None
    for ins in prog:
        k = ins[0]
        if k == "leaf":
            vals.append(B.leaf(ins[1]))
            leaves.append(len(vals) - 1)
        elif k == "add":
            vals.append(vals[ins[1]] + vals[ins[2]])
        elif k == "sub":
            vals.append(vals[ins[1]] - vals[ins[2]])
        elif k == "mul":
            vals.append(vals[ins[1]] * vals[ins[2]])
        elif k == "div":
            vals.append(vals[ins[1]] / (vals[ins[2]] * vals[ins[2]] + 1.0))
        elif k == "square":
            vals.append(vals[ins[1]] * vals[ins[1]])
        elif k in ("tanh", "sigmoid", "exp"):
            vals.append(getattr(B, k)(vals[ins[1]]))
        elif k == "matmul":
            vals.append(vals[ins[1]] @ vals[ins[2]])
        elif k == "matmul_T":
            wt = B.T(vals[ins[2]])
            if ins[3] is not None:
                B.hook(wt, ins[3])
            vals.append(vals[ins[1]] @ wt)
        elif k == "slices":
            x, c = vals[ins[1]], ins[2]
            vals.append(B.cat([x[:, c:], x[:, :c] * 2.0], 1))
        elif k == "stack":
            a, b = vals[ins[1]], vals[ins[2]]
            vals.append(B.stack([a, b], 0)[1] + B.stack([b, a], 1)[:, 0])
        elif k == "where":
            vals.append(B.where(ins[1], vals[ins[2]], vals[ins[3]]))
        elif k == "reduce":
            x = vals[ins[2]]
            vals.append(x * getattr(B, ins[1])(x, ins[3]))
        elif k == "hook":
            B.hook(vals[ins[1]], ins[2])
            vals.append(vals[ins[1]])
        elif k == "retain":
            vals[ins[1]].retain_grad()
            retained.append(ins[1])
            vals.append(vals[ins[1]])
        elif k == "loss":
            for v, c in zip(vals, ins[1]):
                if c:
                    term = (v * float(c)).sum()
                    loss = term if loss is None else loss + term
            vals.append(loss)
        elif k == "twice":
            B.backward(loss, retain=ins[1])
            if ins[1]:
                B.backward(loss, retain=False)
    out = {f"leaf{j}": B.grad(vals[j]) for j in leaves}
    out.update({f"retained{j}": B.grad(vals[j]) for j in retained if j not in leaves})
    return out


def _compare(seed: int) -> None:
    torch = pytest.importorskip("torch")
    prog = _program(seed)
    ours, theirs = _run(prog, _Ours()), _run(prog, _Torch(torch))
    assert ours.keys() == theirs.keys()
    for k in ours:
        if theirs[k] is None:  # not reached by the loss
            assert ours[k] is None, f"seed {seed}: {k} got a gradient torch does not give"
            continue
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-10, atol=1e-12, err_msg=f"seed {seed}: {k}")


@pytest.mark.parametrize("seed", SEEDS)
def test_random_program_matches_torch(seed):
    _compare(seed)


@pytest.mark.parametrize("seed", SEEDS[:8])
def test_random_program_matches_finite_differences(seed):
    """The torch-free check: programs without hooks or retained grads, every leaf against central differences."""
    prog = _program(seed, extras=False)
    grads = _run(prog, _Ours())
    leaf_at = [j for j, ins in enumerate(prog) if ins[0] == "leaf"]
    grads = {k: np.zeros(np.shape(prog[int(k[4:])][1])) if g is None else g for k, g in grads.items()}
    base = [np.array(prog[j][1], dtype=np.float64) for j in leaf_at]

    def loss_of(arrays: list) -> float:
        p = list(prog)
        for j, a in zip(leaf_at, arrays):
            p[j] = ("leaf", a)
        box: dict = {}

        class _Capture(_Ours):
            def backward(self, loss, retain):
                box["loss"] = loss.item()

        _run(p, _Capture())
        return box["loss"]

    eps = 1e-6
    for n, j in enumerate(leaf_at):
        fd = np.zeros_like(base[n])
        for idx in np.ndindex(base[n].shape):
            plus, minus = [b.copy() for b in base], [b.copy() for b in base]
            plus[n][idx] += eps
            minus[n][idx] -= eps
            fd[idx] = (loss_of(plus) - loss_of(minus)) / (2 * eps)
        np.testing.assert_allclose(grads[f"leaf{j}"], fd, rtol=1e-6, atol=1e-7, err_msg=f"seed {seed}: leaf{j}")


def test_detects_broken_accumulation(monkeypatch):
    """With the ownership flag ignored (always +=, into the first term that arrived), the test fails."""
    torch = pytest.importorskip("torch")
    original = engine._Grad.add

    def always_in_place(self, c):
        if type(c) is np.ndarray and self.dense is not None:
            self.dense += c  # wrong: the first term may be an array that another tensor's gradient is, too
        else:
            original(self, c)

    monkeypatch.setattr(engine._Grad, "add", always_in_place)
    failed = 0
    for seed in SEEDS:
        try:
            prog = _program(seed)
            ours, theirs = _run(prog, _Ours()), _run(prog, _Torch(torch))
            for k in ours:
                if theirs[k] is not None:
                    np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-10, atol=1e-12)
        except (AssertionError, ValueError):
            failed += 1
    assert failed >= 3, f"only {failed} of {len(SEEDS)} programs noticed broken accumulation"
