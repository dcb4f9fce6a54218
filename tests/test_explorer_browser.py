"""The explorer page in a real browser: headless Chromium (Debian's chromium + chromium-driver) via Selenium.

One browser for the whole module; every test opens the page afresh from disk with the network off (the host
resolver maps every name to nothing and the proxy points at a closed port, so any fetch fails). Each state is
also saved as a screenshot in the test's tmp directory (``TINYGRAD_LSTM_SCREENSHOTS=dir`` keeps them in dir).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tinygrad_lstm import Tensor, bptt, manual_seed, nn, viz
from tinygrad_lstm.engine import walk
from tinygrad_lstm.ops import Op
from tinygrad_lstm.viz.graph import vshape

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="no headless browser: install Debian's chromium and chromium-driver "
    "(apt-get install chromium chromium-driver; .ci/run does) to run the explorer page's browser tests",
)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
    ):
        opts.add_argument(a)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    d.set_script_timeout(60)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    keep = os.environ.get("TINYGRAD_LSTM_SCREENSHOTS")
    d = Path(keep) if keep else tmp_path_factory.mktemp("explorer_shots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def build(T: int, kind: str = "lstm"):
    manual_seed(0)

    class M(nn.Module):
        def __init__(self) -> None:
            setattr(self, kind, {"lstm": nn.LSTM, "gru": nn.GRU}[kind](3, 4))

    m = M()
    list(m.named_parameters())
    with bptt.record() as rec:
        out, _ = getattr(m, kind)(Tensor.randn(T, 2, 3, name="x"))
        loss = (out * out).mean()
        loss.backward(retain_graph=True)
    return m, loss, rec


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    m, loss, rec = build(60)
    path = tmp_path_factory.mktemp("explorer") / "lstm60.html"
    ex = viz.explore(loss, recording=rec, path=path)
    return m, loss, ex, path


def open_page(d, path: Path) -> dict:
    d.get_log("browser")  # drop what earlier pages logged
    d.get(path.as_uri())
    return d.execute_script("return window.graphExplorer.ready.then(() => window.graphExplorer.timings)")


def errors(d) -> list:
    return [e for e in d.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def js(d, code: str, *args):
    """Run ``code`` (a function body; may return a promise, which is awaited) in the page."""
    return d.execute_script(code, *args)


def visible(d) -> list[str]:
    return js(d, "return window.graphExplorer.visibleNodes()")


def wait_for(pred, timeout: float = 10.0):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_opens_offline_folded_without_errors(browser, page, shots):
    _, _, ex, path = page
    open_page(browser, path)
    assert errors(browser) == []
    # nothing was fetched: no resource entries at all (scripts and data are inline)
    assert js(browser, "return performance.getEntriesByType('resource').length") == 0
    ids = visible(browser)
    boxes = [i for i in ids if i.startswith("box:")]
    assert len(boxes) == 60 and "box:lstm/t=0" in boxes  # one box per time step
    assert len(ids) < 100 < ex.num_nodes["forward"]
    scopes = js(browser, "return [...document.querySelectorAll('[data-scope]')].map(e => e.dataset.scope)")
    assert "lstm/t=42" in scopes and "lstm" in scopes
    browser.save_screenshot(str(shots / "explorer-folded.png"))


def test_click_box_unfolds_and_frame_folds(browser, page, shots):
    _, _, _, path = page
    open_page(browser, path)
    before = visible(browser)
    browser.find_element("css selector", 'g.node[data-scope="lstm/t=3"]').click()
    after = wait_for(lambda: (lambda v: v if len(v) > len(before) else None)(visible(browser)))
    assert "box:lstm/t=3" not in after and len(after) == len(before) - 1 + 14  # 13 ops + its input slice
    frame = browser.find_element("css selector", 'g.cluster[data-scope="lstm/t=3"]')
    assert browser.find_elements("css selector", 'g.cluster[data-scope="lstm/t=3/cell"]')
    browser.save_screenshot(str(shots / "explorer-unfolded.png"))
    frame.find_element("css selector", "text").click()  # the frame's label
    folded = wait_for(lambda: (lambda v: v if len(v) < len(after) else None)(visible(browser)))
    assert sorted(folded) == sorted(before)
    assert errors(browser) == []


def test_info_is_the_engines_gradient_norm(browser, page, shots):
    m, loss, ex, path = page
    open_page(browser, path)
    w = m.lstm.weight_hh_l0
    got = js(browser, "return window.graphExplorer.info(arguments[0])", ex.node_id(w))
    assert got["grad_norm"] == pytest.approx(float(np.linalg.norm(w.grad.astype(np.float64))), rel=1e-10)
    assert got["shape"] == "(16, 4)" and got["dtype"] == str(w.dtype) and got["op"] == "leaf"
    vertices = list(walk(loss))  # op nodes and leaf tensors
    h = next(v for v in vertices if isinstance(v, Op) and v.out_name == "h" and "t=42" in v.scope)
    # h's value, as the next step's affine map saved it for its VJP
    h_data = next(v.saved[0] for v in vertices if isinstance(v, Op) and v.name == "Linear" and v.parents[0] is h)
    for view in ("forward", "backward"):
        got = js(browser, "return window.graphExplorer.info(arguments[0])", ex.node_id(h, view))
        assert got["grad_norm"] == pytest.approx(float(np.linalg.norm(h.grad_out.astype(np.float64))), rel=1e-10)
        assert got["scope"] == "lstm/t=42/cell" and got["t"] == 42
        assert got["inputs"] == [str(tuple(vshape(p))) for p in h.parents] and got["shape"] == "(2, 4)"
        assert got["min"] == pytest.approx(float(h_data.min()), rel=1e-5)
        assert got["max"] == pytest.approx(float(h_data.max()), rel=1e-5)
        assert got["kept"] is True
        # a state: its gradient norm through time, one point per step, equal to the engine's at each step
        series = got["series"]
        assert series["name"] == "h" and series["t"][0] == 0 and len(series["t"]) == 59
    # a value no backward needed is not in the graph, and the panel says so
    pre = next(v for v in vertices if isinstance(v, Op) and v.name == "Linear" and "t=42" in v.scope)
    got = js(browser, "return window.graphExplorer.info(arguments[0])", ex.node_id(pre))
    assert got["kept"] is False and got["min"] is None and got["shape"] == "(2, 16)"
    # hovering a node fills the info panel
    js(browser, "return window.graphExplorer.expand('lstm/t=42')")
    browser.find_element("css selector", f'g.node[data-node="{ex.node_id(h)}"]').click()
    panel = browser.find_element("id", "info").text
    assert "gradient norm" in panel and f"{np.linalg.norm(h.grad_out):.2e}" in panel
    assert browser.find_elements("css selector", "#info svg.plot circle")
    browser.save_screenshot(str(shots / "explorer-info.png"))


def test_backward_view_and_slider(browser, page, shots):
    _, _, _, path = page
    open_page(browser, path)
    js(browser, "return window.graphExplorer.setView('backward')")
    ids = visible(browser)
    assert any(i.startswith("seed") for i in ids) and any(i.startswith("acc") for i in ids)
    js(browser, "return window.graphExplorer.expand('lstm/t=59')")
    ids = visible(browser)
    assert sum(i.startswith("vjp") for i in ids) >= 14 and any(i.startswith("sum") for i in ids)
    labels = js(browser, "return [...document.querySelectorAll('g.edge text')].map(t => t.textContent)")
    assert any(t.startswith("|g| ") for t in labels)  # gradient norms on the backward edges
    browser.save_screenshot(str(shots / "explorer-backward.png"))

    js(browser, "window.graphExplorer.setStep(30)")
    state = js(
        browser,
        "return [...document.querySelectorAll('g.node[data-scope]')].map(g => [g.dataset.scope, "
        "g.classList.contains('unreached')])",
    )
    for scope, unreached in state:
        t = int(scope.rsplit("t=", 1)[1])
        assert unreached == (t < 30), scope  # the gradient has reached steps 59 .. 30, not 29 .. 0
    assert browser.find_element("id", "step-label").text == "t = 30"
    js(browser, "document.querySelector('g.node[data-scope=\"lstm/t=30\"]').scrollIntoView({block: 'center'})")
    browser.save_screenshot(str(shots / "explorer-slider.png"))
    # the slider itself: all the way right is the end of the backward pass, nothing greyed
    js(
        browser,
        "const s = document.getElementById('step'); s.value = s.max; s.dispatchEvent(new Event('input'));",
    )
    assert js(browser, "return document.querySelectorAll('g.unreached').length") == 0
    js(browser, "const s = document.getElementById('step'); s.value = 1; s.dispatchEvent(new Event('input'));")
    assert js(browser, "return window.graphExplorer.step") == 59
    assert errors(browser) == []


def test_search_and_recording_link(browser, page, shots):
    _, _, _, path = page
    open_page(browser, path)
    box = browser.find_element("id", "search")
    box.send_keys("t=42")
    first = wait_for(lambda: browser.find_elements("css selector", "#results li"))[0]
    assert first.text.startswith("lstm/t=42")
    first.click()
    wait_for(lambda: browser.find_elements("css selector", 'g.cluster[data-scope="lstm/t=42"]'))
    box.clear()
    box.send_keys("weight_hh_l0")
    items = wait_for(lambda: browser.find_elements("css selector", "#results li"))
    assert "lstm.weight_hh_l0" in items[0].text
    # a state's name finds that state at every step, first
    found = js(browser, "return window.graphExplorer.search('h')")
    assert all(r["text"].endswith("'h'") for r in found[:10]) and found[0]["where"] == "lstm/t=0/cell"
    # the recording's plot beside the graph: hovering a point marks that step's box
    from selenium.webdriver import ActionChains

    point = browser.find_element("css selector", '#rec circle.pt[data-t="10"]')
    js(browser, "arguments[0].scrollIntoView({block: 'center'})", point)
    hover = "const r = arguments[0].getBoundingClientRect(); arguments[0].dispatchEvent(new MouseEvent('mousemove', "
    hover += "{bubbles: true, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2}))"
    js(browser, hover, point)
    linked = wait_for(lambda: browser.find_elements("css selector", 'g.node.hl[data-scope="lstm/t=10"]'))[0]
    js(browser, "arguments[0].scrollIntoView({block: 'center'})", linked)
    ActionChains(browser).move_to_element(point).perform()
    browser.save_screenshot(str(shots / "explorer-recording.png"))
    assert errors(browser) == []


def test_thousand_steps_size_and_speed(browser, tmp_path, shots):
    _, loss, rec = build(1000)
    path = tmp_path / "lstm1000.html"
    viz.explore(loss, recording=rec, path=path)
    size = path.stat().st_size
    assert size < 5e6, f"{size / 1e6:.2f} MB"
    t0 = time.perf_counter()
    timings = open_page(browser, path)
    interactive = time.perf_counter() - t0
    assert interactive < 5.0, timings
    assert len(visible(browser)) < 60  # folded: blocks of 100 steps
    js(browser, "return window.graphExplorer.expand('lstm/t=500')")
    unfold_ms = js(browser, "return window.graphExplorer.lastLayoutMs")
    assert unfold_ms < 1000
    assert "box:lstm/t=501" in visible(browser) and any(i.startswith("op") for i in visible(browser))
    browser.save_screenshot(str(shots / "explorer-1000.png"))
    assert errors(browser) == []
    print(f"1000-step LSTM page: {size / 1e6:.2f} MB, interactive in {interactive:.2f} s {timings}")
    print(f"unfolding t=500 laid out in {unfold_ms:.0f} ms")


def test_inline_frame_for_jupyter_works(browser, tmp_path, shots):
    _, loss, _ = build(4, "gru")
    host = tmp_path / "notebook.html"
    # a UTF-8 host document, as a Jupyter notebook is
    html = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{viz.explore(loss)._repr_html_()}</body></html>'
    )
    host.write_text(html, encoding="utf-8")
    browser.get(host.as_uri())
    browser.switch_to.frame(browser.find_element("css selector", "iframe"))
    try:
        browser.execute_script("return window.graphExplorer.ready")
        ids = visible(browser)
        assert any(i.startswith("op") for i in ids) and not any(i.startswith("box:") for i in ids)  # 4 steps: open
    finally:
        browser.switch_to.default_content()
    browser.save_screenshot(str(shots / "explorer-jupyter-frame.png"))
    assert errors(browser) == []


def test_nan_gradients_are_red(browser, tmp_path):
    manual_seed(0)
    lstm = nn.LSTM(3, 4)
    out, _ = lstm(Tensor.randn(3, 2, 3))
    out.register_hook(lambda g: np.full_like(g, np.nan))
    loss = out.sum()
    loss.backward(retain_graph=True)
    path = tmp_path / "nan.html"
    ex = viz.explore(loss, path=path, view="backward")
    open_page(browser, path)
    assert js(browser, "return window.graphExplorer.view") == "backward"  # opened in the view asked for
    fills = js(
        browser,
        "return [...document.querySelectorAll('g.node[data-node] > :is(ellipse, polygon, path)')]"
        ".map(e => e.getAttribute('fill'))",
    )
    assert "#d62728" in fills
    # (WebDriver turns NaN into null: ask the page itself)
    assert js(browser, "return Number.isNaN(window.graphExplorer.info(arguments[0]).grad_norm)", ex.node_id(out))
    assert errors(browser) == []


def test_a_value_the_graph_did_not_keep_says_so(browser, page, shots):
    _, loss, ex, path = page
    open_page(browser, path)
    vertices = list(walk(loss))
    pre = next(v for v in vertices if isinstance(v, Op) and v.name == "Linear" and "t=3" in v.scope)
    js(browser, "return window.graphExplorer.expand('lstm/t=3')")
    wait_for(lambda: browser.find_elements("css selector", f'g.node[data-node="{ex.node_id(pre)}"]'))
    browser.find_element("css selector", f'g.node[data-node="{ex.node_id(pre)}"]').click()
    panel = browser.find_element("id", "info").text
    assert "value not kept (no backward needs it)" in panel and "(2, 16)" in panel
    browser.save_screenshot(str(shots / "explorer-not-kept.png"))
