"""The explorer page without a browser: what goes into it, that it is self-contained, the CLI, lazy import."""

from __future__ import annotations

import base64
import gzip
import html
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tinygrad_lstm import Tensor, bptt, manual_seed, nn, ops, viz
from tinygrad_lstm.__main__ import main
from tinygrad_lstm.engine import walk

ROOT = Path(__file__).resolve().parent.parent


def lstm_loss(T: int = 6, record: bool = False):
    manual_seed(0)

    class M(nn.Module):
        def __init__(self) -> None:
            self.lstm = nn.LSTM(3, 4)

    m = M()
    list(m.named_parameters())
    rec = None
    if record:
        with bptt.record() as rec:
            out, _ = m.lstm(Tensor.randn(T, 2, 3, name="x"))
            loss = (out * out).mean()
            loss.backward(retain_graph=True)
    else:
        out, _ = m.lstm(Tensor.randn(T, 2, 3, name="x"))
        loss = (out * out).mean()
        loss.backward(retain_graph=True)
    return m, loss, rec


def page_data(text: str) -> dict:
    m = re.search(r'<script id="graph-data" type="application/octet-stream">\s*([A-Za-z0-9+/=]+)\s*</script>', text)
    assert m, "no data script in the page"
    return json.loads(gzip.decompress(base64.b64decode(m.group(1))))


class Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href", "data", "action") and v]


def test_page_is_self_contained(tmp_path):
    _, loss, _ = lstm_loss()
    ex = viz.explore(loss, path=tmp_path / "g.html")  # path= saves at once
    assert isinstance(ex, viz.Explorer)
    text = (tmp_path / "g.html").read_text(encoding="utf-8")
    refs = Refs()
    refs.feed(text)
    assert refs.refs == []  # nothing loaded by src/href: every script and style is inline
    assert "link" not in refs.tags and "iframe" not in refs.tags
    assert refs.tags.count("script") == 3 and "@import" not in text
    assert "Viz.js " + (ROOT / "tinygrad_lstm/viz/vendor/VERSION").read_text().strip() in text
    assert sorted(x.name for x in tmp_path.iterdir()) == ["g.html"]  # written atomically: no temp file left


def test_page_data_is_the_engines_graph(tmp_path):
    m, loss, _ = lstm_loss(T=4)
    ex = viz.explore(loss)
    data = page_data(ex.html())
    fwd, bwd = data["views"]["forward"], data["views"]["backward"]
    vertices = list(walk(loss))
    n_ops = sum(isinstance(v, ops.Op) for v in vertices)
    assert sum(data["kinds"][k] == "op" for k in fwd["nodes"]["kind"]) == n_ops
    assert sum(data["kinds"][k] == "vjp" for k in bwd["nodes"]["kind"]) == n_ops
    # the same counts as the static renderer's full graph
    assert ex.num_nodes["forward"] == viz.graph.build((loss,), "forward", False).total
    # gradient norms: a weight's and an op's, as the engine computed them
    w = m.lstm.weight_hh_l0
    i = fwd["nodes"]["id"].index(ex.node_id(w))
    assert fwd["nodes"]["grad"][i] == pytest.approx(np.linalg.norm(w.grad), rel=1e-10)
    h = next(v for v in vertices if isinstance(v, ops.Op) and v.out_name == "h" and "t=2" in v.scope)
    j = bwd["nodes"]["id"].index(f"vjp{h.seq}")
    assert bwd["nodes"]["grad"][j] == pytest.approx(np.linalg.norm(h.grad_out), rel=1e-10)
    # scopes are the engine's paths, and the recurrent states form series through time
    assert "lstm/t=3/cell" in data["scopes"]
    names = sorted(s["name"] for s in data["series"])
    assert names == ["c", "h"] and all(s["t"] == [0, 1, 2] for s in data["series"])
    # values: where the graph kept them (a leaf; h, which the next step's affine map saved), not elsewhere (the
    # step's pre-activations, which no VJP saved), with the kept values' statistics
    tcols = data["tensors"]

    def row(v):
        return fwd["nodes"]["tensor"][fwd["nodes"]["id"].index(ex.node_id(v))]

    pre = next(v for v in vertices if isinstance(v, ops.Op) and v.name == "Linear" and "t=2" in v.scope)
    assert [tcols["kept"][row(v)] for v in (w, h, pre)] == [1, 1, 0]
    assert tcols["min"][row(pre)] is None and tcols["max"][row(w)] == pytest.approx(float(w.data.max()), rel=1e-5)


def test_show_values_puts_summaries_in_the_labels():
    _, loss, _ = lstm_loss(T=2)
    plain, values = (page_data(viz.explore(loss, show_values=v).html()) for v in (False, True))
    assert not any("mean " in s for s in plain["strings"]) and any("mean " in s for s in values["strings"])


def test_recording_goes_into_the_page():
    _, loss, rec = lstm_loss(T=5, record=True)
    data = page_data(viz.explore(loss, recording=rec).html())
    got = {r["label"]: r["norm"] for r in data["recording"]}
    assert len(got) == 2
    h = next(v for k, v in got.items() if "dL/dh_t" in k)
    np.testing.assert_allclose(h, rec.grad_norms("h"), rtol=1e-10)


def test_bad_arguments(tmp_path):
    _, loss, _ = lstm_loss(T=2)
    with pytest.raises(ValueError, match="at least one Tensor"):
        viz.explore()
    with pytest.raises(TypeError, match="root 0"):
        viz.explore(np.ones(3))
    with pytest.raises(TypeError, match="unknown option"):
        viz.explore(loss, colour="red")
    with pytest.raises(ValueError, match="view"):
        viz.explore(loss, view="sideways")
    with pytest.raises(ValueError, match="rankdir"):
        viz.explore(loss, rankdir="XY")
    with pytest.raises(TypeError, match="Recording"):
        viz.explore(loss, recording=object())
    with pytest.raises(IsADirectoryError):
        viz.explore(loss).save(tmp_path)
    ex = viz.explore(loss, steps=(1, 1), collapse="cell")  # to_dot's shortening options are accepted
    with pytest.raises(KeyError, match="not drawn"):
        ex.node_id(Tensor(np.ones(2)))
    loss.backward()  # releases the graph
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        viz.explore(loss)


def test_repr_html_is_an_isolated_frame():
    _, loss, _ = lstm_loss(T=2)
    text = viz.explore(loss)._repr_html_()
    assert text.startswith('<iframe srcdoc="') and "<script" not in text  # the page is escaped inside srcdoc
    assert html.unescape(text.split('"')[1]) == viz.explore(loss).html()


def test_importing_the_package_does_not_import_the_explorer():
    code = (
        "import sys, tinygrad_lstm, tinygrad_lstm.viz as v; "
        "assert 'tinygrad_lstm.viz.explorer' not in sys.modules; "
        "v.Explorer; assert 'tinygrad_lstm.viz.explorer' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_cli_explore(tmp_path, capsys):
    out = tmp_path / "g.html"
    assert main(["explore", "--model", "gru", "--steps", "4", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    data = page_data(out.read_text())
    assert "gru/t=3/cell" in data["scopes"] and data["recording"]
    assert main(["explore", "--model", "mlp", "--out", str(tmp_path / "m.html")]) == 0
    for argv, msg in (
        (["--steps", "0"], "--steps: must be an integer >= 1"),
        (["--out", str(tmp_path / "missing" / "g.html")], "does not exist"),
        (["--out", str(out / "g.html")], "is a file"),
        (["--out", str(tmp_path)], "must end in .html"),
    ):
        capsys.readouterr()
        assert main(["explore", *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1


def test_nan_gradients_and_no_backward():
    manual_seed(0)
    lstm = nn.LSTM(3, 4)
    out, _ = lstm(Tensor.randn(3, 2, 3))
    before = page_data(viz.explore(out.sum()).html())  # no backward yet: a page without gradients
    assert all(g is None for g in before["views"]["forward"]["nodes"]["grad"])
    out.register_hook(lambda g: np.full_like(g, np.nan))
    loss = out.sum()
    loss.backward(retain_graph=True)
    data = page_data(viz.explore(loss).html())  # strict JSON: NaN travels as a string
    grads = data["views"]["backward"]["nodes"]["grad"]
    assert "NaN" in grads and not any(isinstance(g, float) and g != g for g in grads)
