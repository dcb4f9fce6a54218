"""Module: attribute walking, dotted names, scopes, state_dict order and load_state_dict's all-or-nothing checks."""

import numpy as np
import pytest

import tinygrad_lstm.nn as nn
from tinygrad_lstm import Tensor
from tinygrad_lstm.ops import Op


class Block(nn.Module):
    def __init__(self):
        self.fc = nn.Linear(3, 4)
        self.heads = [nn.Linear(4, 2), nn.Linear(4, 1)]
        self.extra = {"scale": nn.Parameter(np.ones(2))}
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        h = self.bn(self.fc(x)).relu()
        return self.heads[0](h) * self.extra["scale"], self.heads[1](h)


def test_parameters_found_through_attributes_lists_and_dicts_with_dotted_names():
    m = Block()
    names = [k for k, _ in m.named_parameters()]
    # As in PyTorch: a module's own parameters first, then each child's, depth-first in assignment order.
    assert names == [
        "extra.scale", "fc.weight", "fc.bias", "heads.0.weight", "heads.0.bias", "heads.1.weight",
        "heads.1.bias", "bn.weight", "bn.bias",
    ]  # fmt: skip
    assert [p.name for p in m.parameters()] == names  # parameters carry their names (graph labels)


def test_shared_parameter_counted_once():
    m = Block()
    m.heads[1].weight = m.heads[0].weight = nn.Parameter(np.zeros((2, 4)))
    assert len(m.parameters()) == 8
    assert list(m.state_dict()).count("heads.0.weight") == 1


def test_forward_runs_inside_attribute_scopes():
    m = Block()
    out, _ = m(Tensor(np.ones((5, 3))))
    scopes = set()
    stack = [out.grad_fn]
    while stack:
        v = stack.pop()
        if isinstance(v, Op):  # a node; its inputs are nodes or leaf tensors
            scopes.add(v.scope)
            stack.extend(v.parents)
    assert ("Block", "fc") in scopes and ("Block", "bn") in scopes and ("Block", "heads.0") in scopes


def test_state_dict_is_per_module_params_then_buffers_and_copies():
    m = Block()
    sd = m.state_dict()
    keys = list(sd)
    assert keys.index("bn.bias") < keys.index("bn.running_mean") < keys.index("bn.num_batches_tracked")
    sd["fc.weight"][...] = 7
    assert not (m.fc.weight.data == 7).any()


def test_load_state_dict_checks_everything_before_writing():
    m = Block()
    before = m.state_dict()
    bad = dict(before)
    bad["fc.weight"] = np.zeros((9, 9))
    bad["nope"] = np.zeros(1)
    del bad["bn.bias"]
    with pytest.raises(ValueError, match=r"missing keys: \['bn.bias'\].*unexpected keys: \['nope'\].*fc.weight: shape"):
        m.load_state_dict(bad)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    good = {k: v + 1 for k, v in before.items()}
    m.load_state_dict(good)
    np.testing.assert_array_equal(m.fc.weight.data, before["fc.weight"] + 1)
    assert m.fc.weight.dtype == np.float32


def test_train_eval_and_zero_grad():
    m = Block()
    assert m.eval() is m and not m.bn.training and not m.heads[0].training
    m.train()
    assert m.bn.training
    out, other = m(Tensor(np.ones((5, 3))))
    (out.sum() + other.sum()).backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_forward_not_defined_is_a_clear_error():
    with pytest.raises(NotImplementedError, match="Empty does not define forward"):
        type("Empty", (nn.Module,), {})()(1)


def test_walking_a_submodule_keeps_the_roots_qualified_names():
    m = Block()
    m.parameters()
    assert m.fc.weight.name == "fc.weight"
    m.fc.parameters()  # a walk from the child must not shorten the label back to "weight"
    assert m.fc.weight.name == "fc.weight"
    p = nn.Parameter(np.zeros(2), name="my_scale")
    m.extra["scale"] = p
    m.parameters()
    assert p.name == "my_scale"  # a name the user chose is kept
