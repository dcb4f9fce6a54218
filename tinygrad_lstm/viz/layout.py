"""Finding and running the Graphviz layout program: ``$TINYGRAD_LSTM_DOT``, a system ``dot``, ``graphviz-pure``.

The ``graphviz-pure`` wheel (a dependency) installs a dot-compatible executable, so rendering works right after
``pip install`` with no system package; a system ``dot`` is preferred when present.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..io import atomic_path

ENV = "TINYGRAD_LSTM_DOT"


def find_engine() -> str:
    """The Graphviz layout program to run: ``$TINYGRAD_LSTM_DOT``, else a system ``dot``, else ``graphviz-pure``."""
    env = os.environ.get(ENV)
    if env:
        found = shutil.which(env)
        if found is None:
            raise RuntimeError(f"{ENV}={env!r} is not an executable file or a command on PATH")
        return found
    found = shutil.which("dot")
    if found:
        return found
    found = shutil.which("graphviz-pure")
    if found:
        return found
    # pip may install scripts into a directory that is not on PATH (a venv used without activating it).
    for d in {sysconfig.get_path("scripts"), str(Path(sys.executable).parent)}:
        for name in ("graphviz-pure", "graphviz-pure.exe"):
            p = Path(d) / name
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
    raise RuntimeError(
        "no Graphviz layout engine found: `pip install graphviz-pure` (no system package needed), install "
        f"Graphviz so that `dot` is on PATH, or set {ENV} to the path of a dot-compatible program"
    )


def run_engine(src: str, path: Path, fmt: str) -> Path:
    """Run the layout program on DOT text and write its ``fmt`` output atomically to ``path``."""
    engine = find_engine()
    with atomic_path(path) as tmp:
        proc = subprocess.run(
            [engine, "-Kdot", f"-T{fmt}", "-o", str(tmp)], input=src.encode("utf-8"), capture_output=True, check=False
        )
        if proc.returncode != 0 or os.path.getsize(tmp) == 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise RuntimeError(f"render: {engine} -T{fmt} failed (exit {proc.returncode}): {err}")
    return path


_patch_lock = threading.Lock()


@contextmanager
def engine_for_graphviz() -> Iterator[None]:
    """Point the ``graphviz`` package at our engine for the duration of one call, then put it back.

    The ``graphviz`` package runs ``graphviz.backend.dot_command.DOT_BINARY`` ("dot" from PATH); when that is
    not what ``find_engine`` chose, swap it in only while a call runs, so the user's environment and other
    ``graphviz`` users in the process are left alone afterwards.
    """
    from graphviz.backend import dot_command

    engine = find_engine()
    with _patch_lock:
        prev = dot_command.DOT_BINARY
        dot_command.DOT_BINARY = Path(engine)
        try:
            yield
        finally:
            dot_command.DOT_BINARY = prev


def digraph_class() -> type:
    """A ``graphviz.Digraph`` subclass whose pipe/render run the engine ``find_engine`` picks."""
    import graphviz

    class Digraph(graphviz.Digraph):
        """A ``graphviz.Digraph`` whose pipe/render use the engine ``find_engine`` picks (shows in Jupyter)."""

        def pipe(self, *args: Any, **kwargs: Any) -> Any:
            with engine_for_graphviz():
                return super().pipe(*args, **kwargs)

        def render(self, *args: Any, **kwargs: Any) -> Any:
            with engine_for_graphviz():
                return super().render(*args, **kwargs)

    return Digraph
