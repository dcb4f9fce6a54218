"""The Module API a PyTorch user reaches for: containers, walking, hooks, apply, requires_grad_, double/float,
load_state_dict's missing/unexpected keys, LayerNorm and Identity, and the one input policy of every layer
(torch tensors accepted as constants; one that requires grad refused with the fix)."""

import numpy as np
import pytest

from tinygrad_lstm import Tensor, nn, no_grad
from tinygrad_lstm.nn import functional as F
from tinygrad_lstm.ops import Op


def _torch():
    return pytest.importorskip("torch")


class Net(nn.Module):
    def __init__(self):
        self.blocks = nn.ModuleList([nn.Linear(3, 4), nn.Linear(4, 4)])
        self.heads = nn.ModuleDict({"norm": nn.LayerNorm(4), "out": nn.Linear(4, 2)})
        self.skip = nn.Identity()

    def forward(self, x):
        for b in self.blocks:
            x = b(x).tanh()
        return self.heads["out"](self.heads["norm"](self.skip(x)))


def _torch_net(torch):
    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(3, 4), torch.nn.Linear(4, 4)])
            self.heads = torch.nn.ModuleDict({"norm": torch.nn.LayerNorm(4), "out": torch.nn.Linear(4, 2)})
            self.skip = torch.nn.Identity()

        def forward(self, x):
            for b in self.blocks:
                x = b(x).tanh()
            return self.heads["out"](self.heads["norm"](self.skip(x)))

    return T().double()


# ------------------------------------------------------------------------------------------- containers


def test_containers_names_walks_and_values_match_torch():
    torch = _torch()
    theirs = _torch_net(torch)
    ours = Net().double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert [type(m).__name__ for m in ours.children()] == [type(m).__name__ for m in theirs.children()]
    assert [type(m).__name__ for m in ours.modules()][1:] == [type(m).__name__ for m in theirs.modules()][1:]
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 3))
    xt = Tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    out, tout = ours(xt), theirs(tx)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-9, atol=1e-9)
    (out * out).sum().backward()
    (tout * tout).sum().backward()
    tp = dict(theirs.named_parameters())
    for k, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, tp[k].grad.numpy(), rtol=1e-9, atol=1e-9, err_msg=k)
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=1e-9, atol=1e-9)


def test_module_list_behaves_as_a_list_and_renumbers():
    a, b, c = nn.Linear(1, 1), nn.Linear(1, 2), nn.Linear(2, 2)
    ml = nn.ModuleList([a, b])
    ml.append(c)
    assert len(ml) == 3 and ml[-1] is c and list(ml) == [a, b, c]
    assert [type(m) for m in ml[1:]] == [nn.Linear, nn.Linear] and isinstance(ml[1:], nn.ModuleList)
    del ml[0]
    assert list(ml) == [b, c] and [k for k, _ in ml.named_parameters()][:2] == ["0.weight", "0.bias"]
    ml.insert(0, a)
    ml += [nn.Identity()]
    ml[3] = nn.Tanh()
    assert [type(m).__name__ for m in ml] == ["Linear", "Linear", "Linear", "Tanh"]
    assert len(ml.parameters()) == 6
    with pytest.raises(IndexError, match="index 4 is out of range for 4 modules"):
        ml[4]
    with pytest.raises(TypeError, match="entry 4 is a int, not a Module"):
        ml.append(3)
    with pytest.raises(TypeError, match="iterable of Modules"):
        nn.ModuleList(5)
    with pytest.raises(NotImplementedError, match="ModuleList has no forward"):
        ml(Tensor(np.zeros(1)))


def test_module_dict_behaves_as_a_dict():
    d = nn.ModuleDict([("a", nn.Linear(1, 1))])
    d["b"] = nn.ReLU()
    d.update({"c": nn.Linear(1, 3)})
    assert d.keys() == ["a", "b", "c"] and list(d) == ["a", "b", "c"] and "b" in d and len(d) == 3
    assert isinstance(d.pop("b"), nn.ReLU) and "b" not in d
    assert [k for k, _ in d.named_parameters()] == ["a.weight", "a.bias", "c.weight", "c.bias"]
    del d["a"]
    assert [k for k, _ in d.items()] == ["c"]
    with pytest.raises(KeyError, match="no module 'zz'"):
        d["zz"]
    with pytest.raises(KeyError, match=r"without '\.'"):
        d["x.y"] = nn.ReLU()
    d.clear()
    assert len(d) == 0 and d.parameters() == []


def test_items_of_containers_run_in_their_full_scope():
    from tinygrad_lstm.engine import walk

    net = Net()
    out = net(Tensor(np.ones((2, 3), np.float32)))
    scopes = {v.scope for v in walk(out) if isinstance(v, Op)}
    assert {("Net", "blocks.0"), ("Net", "blocks.1"), ("Net", "heads.norm"), ("Net", "heads.out")} <= scopes


# ------------------------------------------------------------------------------------------- hooks, apply, casts


def test_forward_hook_sees_inputs_can_replace_the_output_and_is_removable():
    lin = nn.Linear(2, 2)
    seen = []
    h1 = lin.register_forward_hook(lambda m, args, out: seen.append((m, args[0].shape, out.shape)))
    h2 = lin.register_forward_hook(lambda m, args, out: out * 0.0)
    x = Tensor(np.ones((3, 2), np.float32))
    assert np.all(lin(x).data == 0) and seen == [(lin, (3, 2), (3, 2))]
    h2.remove()
    h2.remove()  # a second remove does nothing
    assert np.any(lin(x).data != 0) and len(seen) == 2
    h1.remove()
    lin(x)
    assert len(seen) == 2
    with pytest.raises(TypeError, match="hook must be callable"):
        lin.register_forward_hook(3)


def test_forward_hook_matches_torch_order_and_replacement():
    torch = _torch()
    calls, tcalls = [], []
    ours, theirs = nn.Linear(2, 3, dtype=np.float64), torch.nn.Linear(2, 3).double()
    ours.load_state_dict(theirs.state_dict())
    for mod, log in ((ours, calls), (theirs, tcalls)):
        mod.register_forward_hook(lambda m, a, o, log=log: log.append("first"))
        mod.register_forward_hook(lambda m, a, o, log=log: (log.append("second"), o + 1.0)[1])
    x = np.ones((1, 2))
    out, tout = ours(Tensor(x)), theirs(torch.tensor(x))
    assert calls == tcalls == ["first", "second"]
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-12)


def test_apply_visits_children_first_and_returns_self():
    torch = _torch()
    order, torder = [], []
    net = Net()
    assert net.apply(lambda m: order.append(type(m).__name__)) is net
    _torch_net(torch).apply(lambda m: torder.append(type(m).__name__))
    assert order == [n if n != "T" else "Net" for n in torder]

    def zero_linear(m):
        if isinstance(m, nn.Linear):
            with no_grad():
                m.weight.zero_()

    before = net.blocks[0].weight._version
    net.apply(zero_linear)
    assert all(np.all(m.weight.data == 0) for m in net.modules() if isinstance(m, nn.Linear))
    assert net.blocks[0].weight._version > before


def test_requires_grad_freezes_and_unfreezes():
    net = Net()
    assert net.requires_grad_(False) is net
    assert not any(p.requires_grad for p in net.parameters())
    out = net(Tensor(np.ones((1, 3), np.float32)))
    assert not out.requires_grad
    net.heads.requires_grad_()
    net(Tensor(np.ones((1, 3), np.float32))).sum().backward()
    assert net.blocks[0].weight.grad is None and net.heads["out"].weight.grad is not None


def test_double_and_float_cast_in_place_and_keep_the_parameter_objects():
    bn = nn.BatchNorm1d(3)
    net = nn.Sequential(nn.Linear(2, 3), bn)
    params = net.parameters()
    net(Tensor(np.ones((4, 2), np.float32))).sum().backward()
    versions = [p._version for p in params]
    assert net.double() is net
    assert net.parameters() == params  # the same objects: an optimizer holding them keeps working
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in params)
    assert all(p._version > v for p, v in zip(params, versions))
    assert bn.running_mean.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64
    assert net(Tensor(np.ones((4, 2)))).dtype == np.float64
    assert net.float() is net and all(p.dtype == np.float32 for p in params)
    assert bn.running_var.dtype == np.float32 and net.state_dict()["1.running_var"].dtype == np.float32


def test_recurrent_layer_runs_after_double():
    m = nn.LSTM(2, 3, proj_size=2).double()
    out, (h, c) = m(Tensor(np.ones((4, 1, 2))))
    assert out.dtype == h.dtype == c.dtype == np.float64


# ------------------------------------------------------------------------------------------- load_state_dict


def test_load_state_dict_reports_missing_and_unexpected_keys_as_torch():
    torch = _torch()
    ours, theirs = Net(), _torch_net(torch).float()
    state = {k: v.numpy() for k, v in theirs.state_dict().items()}
    del state["blocks.1.bias"]
    state["extra.weight"] = np.zeros(2, np.float32)
    tres = theirs.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)
    res = ours.load_state_dict(state, strict=False)
    assert res.missing_keys == tres.missing_keys and res.unexpected_keys == tres.unexpected_keys
    assert res == (["blocks.1.bias"], ["extra.weight"]) and type(res).__name__ == "_IncompatibleKeys"
    np.testing.assert_array_equal(ours.blocks[0].weight.data, state["blocks.0.weight"])  # what matched is loaded
    assert repr(ours.load_state_dict(ours.state_dict())) == "<All keys matched successfully>"


def test_strict_load_raises_with_both_lists_and_changes_nothing():
    net = Net()
    before = net.state_dict()
    versions = [p._version for p in net.parameters()]
    state = {k: v + 1 for k, v in before.items()}
    del state["heads.out.bias"]
    state["bogus"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys: \['heads.out.bias'\].*unexpected keys: \['bogus'\]"):
        net.load_state_dict(state)
    bad = {k: v + 1 for k, v in before.items()}
    bad["blocks.0.weight"] = np.zeros((9, 9))
    with pytest.raises(ValueError, match=r"blocks.0.weight: shape \(9, 9\)"):
        net.load_state_dict(bad, strict=False)  # a shape mismatch raises even when not strict (as torch)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert [p._version for p in net.parameters()] == versions


def test_load_writes_in_place_and_bumps_versions():
    lin = nn.Linear(2, 2)
    w, arr = lin.weight, lin.weight.data
    v = w._version
    lin.load_state_dict({"weight": np.ones((2, 2)), "bias": np.zeros(2)})
    assert lin.weight is w and w.data is arr and np.all(arr == 1) and w._version == v + 1


# ------------------------------------------------------------------------------------------- LayerNorm, Identity


@pytest.mark.parametrize(
    "shape,kw",
    [((4,), {}), ((3, 4), {}), ((4,), {"elementwise_affine": False}), ((4,), {"bias": False}), ((4,), {"eps": 0.1})],
)
def test_layer_norm_matches_torch(shape, kw):
    torch = _torch()
    rng = np.random.default_rng(3)
    theirs = torch.nn.LayerNorm(shape, **kw).double()
    ours = nn.LayerNorm(shape if len(shape) > 1 else shape[0], dtype=np.float64, **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.tensor(rng.standard_normal(p.shape)))
    ours.load_state_dict(theirs.state_dict())
    x = rng.standard_normal((2, 5, *shape)) * 3 + 1
    xt, tx = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, tout = ours(xt), theirs(tx)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-9, atol=1e-9)
    w = rng.standard_normal(out.shape)
    (out * Tensor(w)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=1e-9, atol=1e-9)
    tp = dict(theirs.named_parameters())
    for k, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, tp[k].grad.numpy(), rtol=1e-9, atol=1e-9)
    assert repr(ours).startswith(f"LayerNorm({tuple(shape)}, eps=")


def test_layer_norm_errors_and_identity():
    with pytest.raises(ValueError, match=r"does not end in normalized_shape=\(4,\)"):
        nn.LayerNorm(4)(Tensor(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="normalized_shape must be positive ints"):
        nn.LayerNorm((2, 0))
    x = Tensor(np.ones(3))
    assert nn.Identity(54, unused="argument")(x) is x


# ------------------------------------------------------------------------------------------- the input policy


def _layers():
    return [
        ("Linear", nn.Linear(2, 3), (4, 2)),
        ("RNN", nn.RNN(2, 3), (4, 1, 2)),
        ("LSTM", nn.LSTM(2, 3, num_layers=2), (4, 1, 2)),
        ("GRU", nn.GRU(2, 3, bidirectional=True), (4, 1, 2)),
        ("RNNCell", nn.RNNCell(2, 3), (1, 2)),
        ("LSTMCell", nn.LSTMCell(2, 3), (1, 2)),
        ("GRUCell", nn.GRUCell(2, 3), (1, 2)),
        ("LayerNorm", nn.LayerNorm(2), (4, 2)),
        ("BatchNorm1d", nn.BatchNorm1d(2), (4, 2)),
        ("Flatten", nn.Flatten(), (4, 1, 2)),
        ("Tanh", nn.Tanh(), (4, 2)),
        ("Softmax", nn.Softmax(dim=-1), (4, 2)),
        ("Dropout", nn.Dropout(0.0), (4, 2)),
    ]


def _flat(out):
    if isinstance(out, tuple):
        return [a for o in out for a in _flat(o)]
    return [out.data]


@pytest.mark.parametrize("name", [n for n, _, _ in _layers()])
def test_every_layer_takes_a_torch_tensor_as_its_ndarray(name):
    torch = _torch()
    _, layer, shape = next(t for t in _layers() if t[0] == name)
    x = torch.linspace(-1, 1, int(np.prod(shape))).reshape(shape)
    got = layer(x)
    want = layer(Tensor(x.numpy()))
    for a, b in zip(_flat(got), _flat(want)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match=rf"{name}: input is a torch tensor that requires grad.*input\.detach\(\)"):
        layer(x.clone().requires_grad_(True))


def test_the_reported_case_and_functional_follow_the_same_policy():
    torch = _torch()
    out, (h, c) = nn.LSTM(2, 3)(torch.zeros(4, 1, 2))  # the example: it used to say "got Tensor"
    assert out.shape == (4, 1, 3) and h.shape == c.shape == (1, 1, 3)
    assert F.relu(torch.tensor([-1.0, 2.0])).data.tolist() == [0.0, 2.0]
    x64 = torch.zeros(4, 1, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match="input has dtype float64 but the parameters are float32"):
        nn.LSTM(2, 3)(x64)  # the torch dtype is kept, so the usual dtype rule applies
    with pytest.raises(TypeError, match="GRU: h0 is a torch tensor that requires grad"):
        nn.GRU(2, 3)(torch.zeros(4, 1, 2), torch.zeros(1, 1, 3, requires_grad=True))
