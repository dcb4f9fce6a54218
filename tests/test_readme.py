"""Every python block of the README runs, in order, in one namespace: the tour can't drift from the code."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)  # the drawing examples write files into the working directory
    namespace: dict = {}
    for block in blocks:
        if "import torch" in block:
            pytest.importorskip("torch")
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "backward.svg").stat().st_size > 0 and (tmp_path / "bptt.png").stat().st_size > 0
    assert namespace["W"].grad.shape == (2, 2)
    assert len(namespace["losses"]) == 10
