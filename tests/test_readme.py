"""Every python block of the README runs: the tour can't drift from the code.

A block runs on its own, or says in its first line that it continues the previous block
(``# continues the previous block``). Each block is run both ways: a standalone block alone, in a fresh
namespace; a continuing block after its predecessors (back to the last standalone block), in their namespace,
and alone too, where it must fail for want of those names (or its first line is not telling the truth).
"""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
CONTINUES = "# continues the previous block"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _continues(block: str) -> bool:
    return block.lstrip().startswith(CONTINUES)


def _run(block: str, namespace: dict, index: int) -> None:
    exec(compile(block, f"{README}:block {index}", "exec"), namespace)


def test_readme_blocks_are_marked_and_the_first_one_stands_alone():
    blocks = _blocks()
    assert len(blocks) >= 5
    assert not _continues(blocks[0])
    for i, block in enumerate(blocks):
        # The marker goes first or nowhere: a continuing block that says so further down would be missed.
        assert CONTINUES not in block or _continues(block), f"block {i}: the marker must be its first line"


def test_readme_python_blocks_run_alone_or_after_their_predecessors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the drawing examples write files into the working directory
    blocks = _blocks()
    has_torch = True
    try:
        import torch  # noqa: F401
    except ImportError:
        has_torch = False
    namespace: dict = {}
    skipped = []
    for i, block in enumerate(blocks):
        if "import torch" in block and not has_torch:
            skipped.append(i)  # the oracle is optional; later blocks do not use what this one loads
            continue
        if _continues(block):
            _run(block, namespace, i)  # with its predecessors
            with pytest.raises(NameError):  # and alone: it really does need them
                _run(block, {}, i)
        else:
            namespace = {}  # alone
            _run(block, namespace, i)
    assert (tmp_path / "backward.svg").stat().st_size > 0 and (tmp_path / "bptt.png").stat().st_size > 0
    assert len(namespace["losses"]) == 10
    if skipped:
        pytest.skip(f"README block(s) {skipped} need torch, which is not installed; the others ran")


def test_the_ten_lines_compute_bptt():
    namespace: dict = {}
    _run(_blocks()[0], namespace, 0)
    assert namespace["W"].grad.shape == (2, 2)
