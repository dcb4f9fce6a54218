"""Recording.param_grads: per-step weight gradients against PyTorch with a fresh copy of every weight per step."""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_lstm import Tensor, bptt, default_dtype, manual_seed, nn, ops
from tinygrad_lstm.engine import walk
from tinygrad_lstm.nn.rnn import STEP_OBSERVERS

torch = pytest.importorskip("torch")

# ------------------------------------------------------------------------------------------------ the oracle


def _torch_step(kind, x, state, p, peephole=False):
    """One step of PyTorch's equations with the given (per-step) parameter tensors p."""
    w_ih, w_hh, b_ih, b_hh = p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh")
    gi = x @ w_ih.T + (b_ih if b_ih is not None else 0)
    if kind == "rnn":
        return torch.tanh(gi + state @ w_hh.T + (b_hh if b_hh is not None else 0))
    gh = state[0] @ w_hh.T if kind == "lstm" else state @ w_hh.T
    gh = gh + (b_hh if b_hh is not None else 0)
    if kind == "gru":
        H = state.shape[-1]
        r = torch.sigmoid(gi[:, :H] + gh[:, :H])
        z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
        return (1 - z) * n + z * state
    h, c = state
    H = h.shape[-1]
    a = gi + gh
    zi, zf, zg, zo = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    if peephole:
        zi, zf = zi + p["weight_ci"] * c, zf + p["weight_cf"] * c
    i, f, g = torch.sigmoid(zi), torch.sigmoid(zf), torch.tanh(zg)
    c = f * c + i * g
    if peephole:
        zo = zo + p["weight_co"] * c
    return torch.sigmoid(zo) * torch.tanh(c), c


def _copies(params: dict[str, np.ndarray], T: int) -> list[dict]:
    """One leaf copy of every parameter per step: its .grad is that step's term."""
    return [{k: torch.tensor(v, requires_grad=True) for k, v in params.items()} for _ in range(T)]


def _torch_layer_terms(layer, x: np.ndarray, R: np.ndarray) -> dict[str, np.ndarray]:
    """Per-step terms (T, *shape) of every parameter of an nn.RNN/LSTM/GRU, loss = sum(out * R)."""
    kind, L, D, H = layer._kind, layer.num_layers, 2 if layer.bidirectional else 1, layer.hidden_size
    T, B = x.shape[0], x.shape[1]
    copies = {}
    inp = torch.tensor(x)
    for lay in range(L):
        outs = []
        for d in range(D):
            sfx = f"_l{lay}" + ("_reverse" if d else "")
            names = [n for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if hasattr(layer, n + sfx)]
            per_step = _copies({n: getattr(layer, n + sfx).data for n in names}, T)
            copies[sfx] = per_step
            zeros = torch.zeros(B, H, dtype=torch.float64)
            state = (zeros, zeros) if kind == "lstm" else zeros
            hs = [None] * T
            for t in range(T - 1, -1, -1) if d else range(T):
                state = _torch_step(kind, inp[t], state, per_step[t])
                hs[t] = state[0] if kind == "lstm" else state
            outs.append(torch.stack(hs))
        inp = torch.cat(outs, dim=-1)
    (inp * torch.tensor(R)).sum().backward()
    terms = {}
    for sfx, per_step in copies.items():
        for n in per_step[0]:
            terms[n + sfx] = np.stack([p[n].grad.numpy() for p in per_step])
    return terms


# ------------------------------------------------------------------------------------------------ layers


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
def test_layer_terms_match_pytorch_per_step_copies(kind, layers, bidirectional):
    manual_seed(1)
    T, B, I, H = 5, 3, 4, 3
    with default_dtype(np.float64):
        layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](
            I, H, num_layers=layers, bidirectional=bidirectional
        )
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, B, I))
    R = rng.standard_normal((T, B, H * (2 if bidirectional else 1)))
    with bptt.record() as rec:
        out, _ = layer(Tensor(x))
        (out * Tensor(R)).sum().backward()
    want = _torch_layer_terms(layer, x, R)
    for name, p in layer.named_parameters():
        got = rec.param_grads(name)
        assert got.shape == (T, *p.shape)
        np.testing.assert_allclose(got, want[name], rtol=1e-9, atol=1e-12, err_msg=name)
        # The terms sum to .grad: the recorded steps are all that used the parameter.
        np.testing.assert_allclose(got.sum(axis=0), p.grad, rtol=1e-9, atol=1e-12, err_msg=name)
    # The short name with layer/direction, and the suffixed name, agree.
    last = f"_l{layers - 1}" + ("_reverse" if bidirectional else "")
    d = 1 if bidirectional else 0
    np.testing.assert_array_equal(rec.param_grads("weight_hh", layers - 1, d), rec.param_grads("weight_hh" + last))


def test_batch_first_and_dotted_names_pick_the_module():
    manual_seed(3)
    with default_dtype(np.float64):

        class Two(nn.Module):
            def __init__(self):
                self.enc = nn.LSTM(2, 3, batch_first=True)
                self.dec = nn.GRU(3, 3, batch_first=True)

            def forward(self, x):
                return self.dec(self.enc(x)[0])[0]

        model = Two()
    names = dict(model.named_parameters())  # gives each parameter its dotted name
    x = Tensor(np.random.default_rng(0).standard_normal((2, 6, 2)))
    with bptt.record() as rec:
        (model(x) ** 2).sum().backward()
    for name in ("enc.weight_hh_l0", "dec.weight_hh_l0", "enc.bias_ih_l0", "dec.bias_hh_l0"):
        terms = rec.param_grads(name)
        assert terms.shape[0] == 6
        np.testing.assert_allclose(terms.sum(axis=0), names[name].grad, rtol=1e-9, atol=1e-13)
    with pytest.raises(ValueError, match="module="):
        rec.param_grads("weight_hh_l0")  # two modules recorded layer 0: ambiguous without module= or a dotted name
    np.testing.assert_array_equal(
        rec.param_grads("weight_hh_l0", module=model.enc), rec.param_grads("enc.weight_hh_l0")
    )


# ------------------------------------------------------------------------------------------------ bare cells


@pytest.mark.parametrize("kind,peephole", [("rnn", False), ("lstm", False), ("lstm", True), ("gru", False)])
def test_bare_cell_in_a_loop_matches_pytorch(kind, peephole):
    manual_seed(4)
    T, B, I, H = 6, 2, 3, 4
    with default_dtype(np.float64):
        if kind == "lstm":
            cell = nn.LSTMCell(I, H, peephole=peephole)
        else:
            cell = {"rnn": nn.RNNCell, "gru": nn.GRUCell}[kind](I, H)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, I))
    R = rng.standard_normal((T, B, H))
    with bptt.record() as rec:
        state, loss = None, 0.0
        for t in range(T):
            state = cell(Tensor(x[t]), state)
            h = state[0] if kind == "lstm" else state
            loss = loss + (h * Tensor(R[t])).sum()
        loss.backward()
    params = {n: p.data for n, p in cell.named_parameters()}
    per_step = _copies(params, T)
    zeros = torch.zeros(B, H, dtype=torch.float64)
    tstate, tloss = ((zeros, zeros) if kind == "lstm" else zeros), 0.0
    for t in range(T):
        tstate = _torch_step(kind, torch.tensor(x[t]), tstate, per_step[t], peephole)
        tloss = tloss + ((tstate[0] if kind == "lstm" else tstate) * torch.tensor(R[t])).sum()
    tloss.backward()
    for name in dict(cell.named_parameters()):
        want = np.stack([c[name].grad.numpy() for c in per_step])
        np.testing.assert_allclose(rec.param_grads(name), want, rtol=1e-9, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(rec.param_grad_norms(name), np.linalg.norm(want.reshape(T, -1), axis=1))


def test_a_weight_used_once_has_one_term_equal_to_its_gradient():
    manual_seed(6)
    with default_dtype(np.float64):
        cell = nn.GRUCell(3, 2)
    with bptt.record() as rec:
        h = cell(Tensor(np.ones((4, 3))))
        (h * h).sum().backward()
    for name, p in cell.named_parameters():
        terms = rec.param_grads(name)
        assert terms.shape == (1, *p.shape)
        np.testing.assert_array_equal(terms[0], p.grad)


def test_costs_nothing_outside_a_recording_and_can_be_switched_off():
    manual_seed(7)
    layer = nn.LSTM(2, 3)
    x = Tensor(np.ones((4, 1, 2), np.float32))
    assert not STEP_OBSERVERS
    out, _ = layer(x)
    # Without an observer no alias is made: the step's affine map reads W_hh itself.
    params = {id(p) for p in layer.parameters()}
    node = out.grad_fn
    seen_alias = False
    for v in walk(out):  # the graph's vertices: op nodes and leaf tensors
        if isinstance(v, ops.Op) and v.name == "GetItem" and any(id(q) in params for q in v.parents):
            seen_alias = True
    assert node is not None and not seen_alias
    with bptt.record(param_grads=False) as rec:
        out, _ = layer(x)
        out.sum().backward()
    with pytest.raises(bptt.NotRecordedError, match="param_grads=True"):
        rec.param_grads("weight_hh_l0")
    assert rec.grad_norms().shape == (4,)


def test_param_grads_errors():
    manual_seed(8)
    layer = nn.RNN(2, 3, bias=False)
    with bptt.record() as rec:
        out, _ = layer(Tensor(np.ones((3, 1, 2), np.float32)))
        with pytest.raises(RuntimeError, match="backward"):
            rec.param_grads("weight_hh_l0")
        out.sum().backward()
    with pytest.raises(bptt.NotRecordedError, match="did not use a parameter 'bias_hh_l0'"):
        rec.param_grads("bias_hh_l0")
    with pytest.raises(bptt.NotRecordedError, match="not a recurrent parameter name"):
        rec.param_grads("fc.weight")
    with pytest.raises(ValueError, match="layer 0 direction 0, but layer=1"):
        rec.param_grads("weight_hh_l0", layer=1)
    with pytest.raises(bptt.NotRecordedError, match="layer=1"):
        rec.param_grads("weight_hh_l1")
    with pytest.raises(TypeError, match="name must be a str"):
        rec.param_grads(3)


def test_unbatched_and_peephole_layers_sum_to_the_gradient():
    manual_seed(9)
    with default_dtype(np.float64):
        layer = nn.LSTM(3, 2, num_layers=2, peephole=True, bidirectional=True)
    x = Tensor(np.random.default_rng(1).standard_normal((5, 3)))  # unbatched (T, I)
    with bptt.record() as rec:
        out, _ = layer(x)
        (out * out).sum().backward()
    for name, p in layer.named_parameters():
        terms = rec.param_grads(name)
        assert terms.shape == (5, *p.shape), name
        np.testing.assert_allclose(terms.sum(axis=0), p.grad, rtol=1e-10, atol=1e-13, err_msg=name)
    # Per-step copies of a peephole weight, checked one step at a time: only step 2 uses the perturbed copy.
    w = layer.weight_cf_l1_reverse
    eps, t = 1e-6, 2
    base = rec.param_grads("weight_cf_l1_reverse")[t]
    fd = np.zeros(w.shape)
    for j in range(w.shape[0]):
        vals = []
        for sgn in (1, -1):
            delta = np.zeros(w.shape)
            delta[j] = sgn * eps
            vals.append(_loss_with_step_perturbed(layer, x, "weight_cf_l1_reverse", t, delta))
        fd[j] = (vals[0] - vals[1]) / (2 * eps)
    np.testing.assert_allclose(base, fd, rtol=1e-6, atol=1e-9)


def _loss_with_step_perturbed(layer, x, name, t, delta) -> float:
    """The loss when only step t's use of parameter ``name`` sees ``p + delta``: ``nn.rnn._use``, which makes the
    per-step aliases, is wrapped to perturb the one alias of step t (an observer asking for aliases turns it on)."""
    import tinygrad_lstm.nn.rnn as rnn
    from tinygrad_lstm import no_grad

    class WantsAliases:
        wants_param_uses = True

        def __call__(self, rec):
            pass

    original, seen = rnn._use, []

    def use(p, pname, uses):
        alias = original(p, pname, uses)
        if pname != name or uses is None:
            return alias
        seen.append(pname)
        step = x.shape[0] - len(seen)  # a reverse direction runs t = T-1, ..., 0
        return alias + Tensor(delta) if step == t else alias

    rnn._use = use
    STEP_OBSERVERS.append(WantsAliases())
    try:
        with no_grad():
            out, _ = layer(x)
    finally:
        STEP_OBSERVERS.pop()
        rnn._use = original
    return float((out.data * out.data).sum())


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_packed_input_terms_sum_to_the_gradient(kind):
    # A PackedSequence runs step t on fewer rows: the per-step aliases and the projection's packed rows still
    # give terms that add up to every parameter's .grad, in both directions.
    from tinygrad_lstm.nn.utils.rnn import pack_padded_sequence

    rng = np.random.default_rng(3)
    with default_dtype(np.float64):
        m = getattr(nn, kind)(3, 4, bidirectional=True)
    x = Tensor(rng.standard_normal((5, 3, 3)))
    packed = pack_padded_sequence(x, [5, 2, 3], enforce_sorted=False)
    with bptt.record() as rec:
        out, _ = m(packed)
        (out.data * out.data).sum().backward()
    for name, p in m.named_parameters():
        terms = rec.param_grads(name)
        assert terms.shape == (5, *p.shape)
        np.testing.assert_allclose(terms.sum(axis=0), p.grad, rtol=1e-9, atol=1e-12)
