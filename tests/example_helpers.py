"""Shared by the example tests: load a script from ``examples/`` by path, and check the pictures it wrote."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (cached, so each is imported once): examples are scripts."""
    key = f"_example_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[key] = mod
    spec.loader.exec_module(mod)
    return mod


def assert_png(path: Path | str, min_bytes: int = 5000) -> None:
    """A non-trivial file starting with the PNG signature."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > min_bytes, f"{path} is suspiciously small ({len(data)} bytes)"


def assert_pngs(paths: list[str], expected: int) -> None:
    """Exactly ``expected`` pictures, each a real PNG."""
    assert len(paths) == expected
    for p in paths:
        assert_png(p)
