"""In a real Jupyter kernel (nbclient + ipykernel): a recording's plot shows as a PNG, a drawn graph as an SVG.

The notebook is built with nbformat and run by this interpreter's ipykernel, importing this checkout; nothing in
it turns on ``%matplotlib inline``, so the PNG comes from the figure itself, as it would in a fresh notebook.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402  (installed with nbclient)
from jupyter_client.manager import KernelManager  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "tinygrad-lstm-test"

SETUP = """\
import sys
import tinygrad_lstm as tl
from tinygrad_lstm import Tensor, bptt, nn, viz
print(sys.executable)
print(tl.__file__)
tl.manual_seed(0)
lstm, head = nn.LSTM(2, 4), nn.Linear(4, 1)
with bptt.record() as rec:
    out, _ = lstm(Tensor.randn(5, 3, 2))
    loss = (head(out[-1]) ** 2).mean()
    loss.backward(retain_graph=True)
"""


def _kernel_manager(tmp_path: Path) -> KernelManager:
    """A kernel of this very interpreter (not whatever ``python3`` kernel is installed), importing this checkout."""
    spec_dir = tmp_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tinygrad_lstm tests",
        "language": "python",
        "env": {"PYTHONPATH": pythonpath},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]))


def _outputs(cell) -> dict[str, object]:
    """The mime bundle of the cell's displayed result (execute_result or display_data), merged."""
    data: dict[str, object] = {}
    for out in cell.outputs:
        if out["output_type"] in ("execute_result", "display_data"):
            data.update(out["data"])
    return data


def test_plot_and_drawing_display_inline_in_a_kernel(tmp_path: Path) -> None:
    start = time.perf_counter()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_code_cell("rec.plot()"),
        nbformat.v4.new_code_cell("viz.draw(loss)"),
        nbformat.v4.new_code_cell('bptt.compare_cells(["rnn", "lstm"], steps=10, hidden=4, batch=2)["figure"]'),
        nbformat.v4.new_code_cell("import os; sorted(os.listdir('.'))"),
    ]
    km = _kernel_manager(tmp_path)
    client = nbclient.NotebookClient(nb, km=km, timeout=60, startup_timeout=30)
    work = tmp_path / "work"
    work.mkdir()
    try:
        km.start_kernel(cwd=str(work))
        client.start_new_kernel_client()
    except Exception as e:  # no usable kernel here (no zmq sockets, a broken ipykernel): not this project's bug
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        pytest.skip(f"no Jupyter kernel could start with {sys.executable}: {type(e).__name__}: {e}")
    try:
        client.execute()
    finally:
        client.kc.stop_channels()
        km.shutdown_kernel(now=True)

    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs if o["output_type"] == "stream").split()
    assert Path(printed[0]).resolve() == Path(sys.executable).resolve()  # the project's interpreter
    assert Path(printed[1]).resolve() == (ROOT / "tinygrad_lstm" / "__init__.py").resolve()  # and this checkout

    plot = _outputs(nb.cells[1])
    assert "image/png" in plot, plot.keys()
    png = base64.b64decode(plot["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    drawing = _outputs(nb.cells[2])
    assert "image/svg+xml" in drawing, drawing.keys()
    assert "<svg" in drawing["image/svg+xml"] and "LSTM" in drawing["image/svg+xml"].upper()
    assert "image/png" in _outputs(nb.cells[3])
    # Showing a figure writes no file: the working directory is still empty.
    assert _outputs(nb.cells[4])["text/plain"] == "[]"
    assert time.perf_counter() - start < 60  # about 5 s on 2 cores: a slow kernel means something is wrong
