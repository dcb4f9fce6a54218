"""Tests of the graph renderer: DOT structure, views, gradients, shortening, rendering."""

from __future__ import annotations

import re
import time
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tinygrad_lstm import Tensor, manual_seed, scope
from tinygrad_lstm.nn import GRU, LSTM, Module, Parameter
from tinygrad_lstm.viz import draw, find_engine, render, to_dot


class HandCell(Module):
    """An LSTM step written by hand with Tensor ops (independent of nn.rnn)."""

    def __init__(self, n: int, h: int) -> None:
        rng = np.random.default_rng(0)
        self.weight_ih = Parameter(rng.standard_normal((4 * h, n)) * 0.3)
        self.weight_hh = Parameter(rng.standard_normal((4 * h, h)) * 0.3)
        self.bias = Parameter(np.zeros(4 * h))
        self.h = h

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        z = x @ self.weight_ih.T + h @ self.weight_hh.T + self.bias
        k = self.h
        i, f = z[:, :k].sigmoid(), z[:, k : 2 * k].sigmoid()
        g, o = z[:, 2 * k : 3 * k].tanh(), z[:, 3 * k :].sigmoid()
        c = f * c + i * g
        return o * c.tanh(), c


class HandLSTM(Module):
    def __init__(self, n: int, h: int) -> None:
        self.cell = HandCell(n, h)

    def forward(self, xs: Tensor, hooks: dict | None = None) -> tuple[Tensor, list]:
        b = xs.shape[1]
        h = Tensor.zeros(b, self.cell.h, dtype=np.float64)
        c = Tensor.zeros(b, self.cell.h, dtype=np.float64)
        hs = []
        for t in range(xs.shape[0]):
            with scope(f"t={t}"):
                h, c = self.cell(xs[t], h, c)
            if hooks and t in hooks:
                h.register_hook(hooks[t])
            hs.append(h)
        return h, hs


class Net(Module):
    def __init__(self, n: int = 3, h: int = 4) -> None:
        self.lstm = HandLSTM(n, h)

    def forward(self, xs: Tensor, hooks: dict | None = None) -> tuple[Tensor, list]:
        h, hs = self.lstm(xs, hooks)
        return (h * h).sum(), hs


def build(T: int = 3, backward: bool = True, hooks: dict | None = None):
    net = Net()
    dict(net.named_parameters())
    xs = Tensor(np.random.default_rng(1).standard_normal((T, 2, 3)))
    loss, hs = net(xs, hooks)
    if backward:
        loss.backward(retain_graph=True)
    return net, loss, hs


def nodes(dot: str) -> dict[str, str]:
    """node id -> label text."""
    return {m.group(1): m.group(2) for m in re.finditer(r'^\s*(n\d+) \[label="((?:[^"\\]|\\.)*)"', dot, re.M)}


def edges(dot: str) -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2), m.group(3) or "") for m in re.finditer(r"(n\d+) -> (n\d+)(?: \[(.*)\])?;", dot)]


def clusters(dot: str) -> list[str]:
    return re.findall(r'subgraph "cluster_\d+" \{\s*label="([^"]*)"', dot)


def test_forward_clusters_and_params():
    _, loss, _ = build()
    dot = to_dot(loss)
    cl = clusters(dot)
    assert sorted(c for c in cl if c.startswith("t=")) == ["t=0", "t=1", "t=2"]
    assert cl.count("cell") == 3 and cl.count("lstm") == 1
    labels = list(nodes(dot).values())
    for name in ("lstm.cell.weight_ih", "lstm.cell.weight_hh", "lstm.cell.bias"):
        assert sum(lab.split("\\n")[0] == name for lab in labels) == 1, name
    # each step cluster holds the gate ops of an LSTM
    blocks = re.split(r'label="t=\d+"', dot)[1:]
    for block in blocks:
        body = block.split('label="t=')[0]
        ops = [lab.split("\\n")[0] for lab in nodes(body).values()]
        assert ops.count("Sigmoid") == 3 and ops.count("Tanh") == 2 and "MatMul" in ops


def test_param_fans_out_to_every_step():
    _, loss, _ = build(T=4)
    dot = to_dot(loss)
    ids = {v.split("\\n")[0]: k for k, v in nodes(dot).items()}
    w = ids["lstm.cell.weight_hh"]
    assert len([e for e in edges(dot) if e[0] == w]) == 4  # one Transpose per step


def test_backward_view_one_node_per_vjp():
    _, loss, _ = build()
    fwd, bwd = to_dot(loss), to_dot(loss, view="backward")
    fwd_ops = sorted(v.split("\\n")[0] for v in nodes(fwd).values() if not v.startswith(("lstm.", "input")))
    bwd_vjps = sorted(v.split("\\n")[0] for v in nodes(bwd).values() if v.split("\\n")[0].endswith("Backward"))
    assert [o + "Backward" for o in fwd_ops] == bwd_vjps
    labels = list(nodes(bwd).values())
    acc = [lab for lab in labels if "AccumulateGrad" in lab]
    assert len(acc) == 3 and all("+= (3 terms)" in lab for lab in acc)
    assert any(lab.startswith("+= (") for lab in labels)  # h and c summed from two uses
    # gradients flow from the seed towards the leaves: AccumulateGrad nodes have no outgoing edges
    ids = {k for k, v in nodes(bwd).items() if "AccumulateGrad" in v}
    assert not [e for e in edges(bwd) if e[0] in ids]


def test_grad_norms_match_the_engine():
    net, loss, _ = build()
    dot = to_dot(loss, view="backward")
    w = net.lstm.cell.weight_hh
    lab = next(v for v in nodes(dot).values() if v.startswith("lstm.cell.weight_hh"))
    assert f"|g| {np.linalg.norm(w.grad):.2e}" in lab


def test_no_backward_warns_and_says_so():
    _, loss, _ = build(backward=False)
    with pytest.warns(UserWarning, match=r"backward\(retain_graph=True\)"):
        dot = to_dot(loss)
    assert "backward(retain_graph=True)" in dot and "|g|" not in dot
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_dot(loss, show_grads=False)


def test_released_graph_is_a_clear_error():
    _, loss, _ = build(backward=False)
    loss.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        to_dot(loss)


def test_nan_marks_exactly_the_downstream_backward_nodes():
    nan = lambda g: np.full_like(g, np.nan)  # noqa: E731
    _, loss, hs = build(T=3, hooks={1: nan})
    dot = to_dot(loss, view="backward")
    labels = nodes(dot)
    red = {k for k, v in labels.items() if "|g| NaN" in v}
    red_lines = {k for k in labels if re.search(rf"^\s*{k} \[.*fillcolor=\"#d62728\"", dot, re.M)}
    assert red == red_lines
    # expected: the VJPs of every op h_1 depends on (the hook's NaN reaches them all), and the leaves
    expected_ops = set()
    stack, seen = [hs[1].grad_fn], set()
    while stack:
        v = stack.pop()
        if id(v) in seen or isinstance(v, Tensor):  # a leaf
            continue
        seen.add(id(v))
        expected_ops.add(id(v))
        stack.extend(v.parents)
    n_vjp_red = sum(1 for k in red if labels[k].split("\\n")[0].endswith("Backward"))
    n_acc_red = sum(1 for k in red if "AccumulateGrad" in labels[k])
    assert n_vjp_red == len(expected_ops) and n_acc_red == 3
    # and nothing at the last step (upstream of h_1 in the backward pass) is red
    last = dot.split('label="t=2"')[1].split('label="t=')[0].split(" -> ")[0]
    assert nodes(last) and "NaN" not in last


def test_steps_ellipsis():
    _, loss, _ = build(T=8)
    dot = to_dot(loss, steps=(2, 2))
    assert sorted(c for c in clusters(dot) if c.startswith("t=")) == ["t=0", "t=1", "t=6", "t=7"]
    ell = [v for v in nodes(dot).values() if v.startswith("... ")]
    assert ell == [ell[0]] and ell[0].startswith("... 4 steps ...")
    bwd = to_dot(loss, view="backward", steps=(1, 1))
    assert len([c for c in clusters(bwd) if c.startswith("t=")]) == 2


def test_collapse_cell():
    _, loss, _ = build(T=3)
    dot = to_dot(loss, collapse="cell")
    groups = [v for v in nodes(dot).values() if v.startswith("Net / lstm / t=")]
    assert len(groups) == 3 and all("in:" in g and "out:" in g for g in groups)
    ids = {k: v for k, v in nodes(dot).items() if v.startswith("Net / lstm / t=")}
    between = [e for e in edges(dot) if e[0] in ids and e[1] in ids]
    assert len(between) == 4 and all("(2, 4)" in e[2] for e in between)  # h and c, twice
    assert len(clusters(to_dot(loss, collapse=3))) == len(clusters(to_dot(loss, collapse="t=*")))


def test_detach_edge():
    net = Net()
    xs = Tensor(np.ones((2, 2, 3)))
    h, _ = net.lstm(xs)
    cut = h.detach()
    with scope("chunk2"):
        loss = (cut * net.lstm.cell.bias[:4]).sum()
    dot = to_dot(loss, h, show_grads=False)
    assert any("detach" in e[2] and "dashed" in e[2] for e in edges(dot))


def test_bad_arguments():
    _, loss, _ = build()
    for kw in ({"view": "sideways"}, {"steps": (0, 0)}, {"collapse": 0}, {"rankdir": "XY"}, {"max_nodes": 0}):
        with pytest.raises(ValueError):
            to_dot(loss, **kw)
    with pytest.raises(TypeError):
        to_dot(np.ones(3))
    with pytest.raises(ValueError):
        render(loss, path="x.pdf")


def test_render_svg_and_png(tmp_path):
    _, loss, _ = build()
    p = render(loss, path=tmp_path / "g.svg")
    root = ET.parse(p).getroot()
    assert root.tag.endswith("svg")
    text = "".join(root.itertext())
    assert "lstm.cell.weight_hh" in text and "t=2" in text
    q = render(loss, path=tmp_path / "g.png", view="backward")
    assert q.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["g.png", "g.svg"]  # no temp files left


def test_draw_returns_digraph():
    graphviz = pytest.importorskip("graphviz")
    _, loss, _ = build()
    g = draw(loss, view="backward")
    assert isinstance(g, graphviz.Digraph)
    svg = g.pipe(format="svg").decode()
    ET.fromstring(svg)


def test_engine_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYGRAD_LSTM_DOT", str(tmp_path / "nope"))
    with pytest.raises(RuntimeError, match="TINYGRAD_LSTM_DOT"):
        find_engine()
    monkeypatch.delenv("TINYGRAD_LSTM_DOT")
    assert find_engine()


def test_thousand_steps_render_fast(tmp_path):
    manual_seed(0)
    t0 = time.perf_counter()
    lstm = LSTM(3, 4)
    out, _ = lstm(Tensor.randn(1000, 2, 3))
    loss = (out * out).mean()
    loss.backward(retain_graph=True)
    with pytest.warns(UserWarning, match="max_nodes"):
        p = render(loss, path=tmp_path / "long.svg", view="backward")
    assert time.perf_counter() - t0 < 10
    svg = p.read_text()
    ET.fromstring(svg)
    assert "steps ..." in svg and "max_nodes" in svg


def test_nn_lstm_forward_clusters():
    manual_seed(0)

    class M(Module):
        def __init__(self) -> None:
            self.lstm = LSTM(3, 4)

    m = M()
    dict(m.named_parameters())
    out, _ = m.lstm(Tensor.randn(3, 2, 3))
    dot = to_dot(out.sum(), show_grads=False)
    assert sorted(c for c in clusters(dot) if c.startswith("t=")) == ["t=0", "t=1", "t=2"]
    firsts = [v.split("\\n")[0] for v in nodes(dot).values()]
    assert firsts.count("lstm.weight_hh_l0") == 1


def _svg_px(path) -> tuple[float, float]:
    root = ET.parse(path).getroot()
    return float(root.get("width").removesuffix("pt")) * 4 / 3, float(root.get("height").removesuffix("pt")) * 4 / 3


def _recurrent_loss(kind: str, T: int):
    manual_seed(0)

    class M(Module):
        def __init__(self) -> None:
            setattr(self, kind, {"lstm": LSTM, "gru": GRU}[kind](3, 4))

    m = M()
    dict(m.named_parameters())
    out, _ = getattr(m, kind)(Tensor.randn(T, 2, 3))
    loss = (out * out).mean()
    loss.backward(retain_graph=True)
    return loss


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_default_drawing_is_readable(tmp_path, kind):
    """A 50-step unroll drawn with default options stays within MAX_SIZE, and says on the drawing what it left out."""
    from tinygrad_lstm.viz import MAX_SIZE

    loss = _recurrent_loss(kind, 50)
    for view in ("forward", "backward"):
        with pytest.warns(UserWarning, match="max_size"):
            p = render(loss, path=tmp_path / f"{view}.svg", view=view)
        w, h = _svg_px(p)
        assert w <= MAX_SIZE[0] and h <= MAX_SIZE[1], (view, w, h)
        text = "".join(ET.parse(p).getroot().itertext())
        assert "steps hidden" in text and "full=True" in text and "steps ..." in text
    # full=True: every node, and no note
    from tinygrad_lstm.viz import graph

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dot = to_dot(loss, view="backward", full=True)
    assert len(nodes(dot)) == graph.build((loss,), "backward", False).total
    assert "steps hidden" not in dot


def test_full_drawing_would_not_be_readable(tmp_path):
    """What the default avoids: the whole 50-step GRU backward graph is far wider than MAX_SIZE."""
    from tinygrad_lstm.viz import MAX_SIZE

    w, _ = _svg_px(render(_recurrent_loss("gru", 50), path=tmp_path / "full.svg", view="backward", full=True))
    assert w > 3 * MAX_SIZE[0]


def test_small_drawings_are_not_shortened():
    _, loss, _ = build(T=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for view in ("forward", "backward"):
            assert "steps hidden" not in to_dot(loss, view=view)
    with pytest.raises(ValueError, match="max_size"):
        to_dot(loss, max_size=(0, 10))
    # max_size=None: only max_nodes shortens
    assert "steps hidden" not in to_dot(_recurrent_loss("lstm", 20), max_size=None)
