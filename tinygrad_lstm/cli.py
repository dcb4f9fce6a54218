"""The command line's validation layer, shared by every subcommand: bad input is one line on stderr, exit 2.

* ``ArgumentParser`` reports an argparse error as one line (``tinygrad-lstm graph: error: ...``) instead of the
  usage block, and exits with status 2.
* Argument types check values where argparse reads them: ``positive_int``, ``nonnegative_int``, ``seed`` (an
  int >= 0), ``finite_float``, ``output_file(*suffixes)`` and ``output_dir`` (the directory exists and a file
  can be created in it, tried for real, so a read-only mount or a parent that is a file is caught before any
  work).
* ``check_output_file(path, *suffixes)`` makes the same checks for a path computed at run time.
* ``check_memory(nbytes, what)`` refuses a run whose estimated memory (``model_memory``) is above half of this
  machine's RAM, and says how much it would need.
* ``run_guarded(command, fn, args)`` runs a subcommand and turns ``UsageError``, ``ValueError``,
  ``TypeError``, ``OSError`` and ``MemoryError`` into the same one-line message and exit status 2.

A new subcommand reuses these: its options take these types, and its run function raises ``UsageError`` (or
ValueError) with a message; ``__main__.main`` wraps every subcommand in ``run_guarded``. Set
``TINYGRAD_LSTM_TRACEBACK=1`` to see the full traceback of an error instead of its one line.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

PROG = "tinygrad-lstm"
MEMORY_FRACTION = 0.5  # of physical RAM: above that a run would swap or be killed, so it is refused up front
_FALLBACK_RAM = 4 << 30  # when the OS does not say how much RAM there is
TRACEBACK_ENV = "TINYGRAD_LSTM_TRACEBACK"


class UsageError(Exception):
    """Bad command-line input, found after parsing (a combination of options, a size too big): exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with an error reported as one line on stderr (and ``--help`` pointed at) instead of the usage."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message> (see <prog> --help)`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def seed(text: str) -> int:
    """An argparse type: a random seed, an integer >= 0 (what numpy's generators accept)."""
    return nonnegative_int(text)


def finite_float(text: str) -> float:
    """An argparse type: a finite number (NaN and infinities refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _dir_problem(directory: Path) -> str | None:
    """Why no file can be created in ``directory``, or None if one can."""
    if not directory.exists():
        return f"directory {str(directory)!r} does not exist"
    if not directory.is_dir():
        return f"{str(directory)!r} is a file, not a directory"
    # Try for real: os.access says yes to root on a read-only mount, and permissions are not the only reason.
    try:
        fd, probe = tempfile.mkstemp(prefix=".tinygrad_lstm_probe.", dir=directory)
    except OSError as e:
        return f"cannot create a file in {str(directory)!r} ({e.strerror or e})"
    os.close(fd)
    os.unlink(probe)
    return None


def _file_problem(path: Path, suffixes: tuple[str, ...]) -> str | None:
    """Why ``path`` cannot be written as an output file with one of ``suffixes``, or None if it can."""
    if suffixes and path.suffix.lower() not in suffixes:
        return f"{str(path)!r} must end in {' or '.join(suffixes)}"
    if path.is_dir():
        return f"{str(path)!r} is a directory, not a file"
    # Only the directory matters: files are written beside the target and renamed over it (io.atomic_path).
    problem = _dir_problem(path.parent)
    return None if problem is None else f"cannot write {str(path)!r}: {problem}"


def check_output_file(path: str | os.PathLike, *suffixes: str) -> Path:
    """``path`` as a Path if it can be written (its directory exists and takes a new file; one of ``suffixes``);
    otherwise raise ``UsageError``. For output paths that are computed rather than given as an option."""
    path = Path(path)
    problem = _file_problem(path, tuple(s.lower() for s in suffixes))
    if problem is not None:
        raise UsageError(problem)
    return path


def output_file(*suffixes: str) -> Callable[[str], Path]:
    """An argparse type: a file path that can be written, with one of ``suffixes`` (e.g. ".svg", ".png")."""
    allowed = tuple(s.lower() for s in suffixes)

    def parse(text: str) -> Path:
        problem = _file_problem(Path(text), allowed)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return Path(text)

    parse.__name__ = "output file"  # argparse names the type in its own messages
    return parse


def output_dir(text: str) -> Path:
    """An argparse type: a directory to write into; it may not exist yet (it is then created), but its parent
    must."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a directory")
    problem = _dir_problem(path) if path.exists() else _dir_problem(path.parent)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"cannot write into {text!r}: {problem}")
    return path


def physical_memory() -> int:
    """This machine's RAM in bytes (a 4 GiB guess where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return _FALLBACK_RAM


def format_bytes(n: float) -> str:
    """``n`` bytes in words: 1.5 GB, 320 MB (decimal units)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def check_memory(nbytes: float, what: str) -> None:
    """Raise ``UsageError`` if ``nbytes`` (an estimate of a run's memory) exceeds half of the physical RAM."""
    limit = MEMORY_FRACTION * physical_memory()
    if nbytes > limit:
        raise UsageError(
            f"{what} would need about {format_bytes(nbytes)} of memory, more than half of this machine's "
            f"{format_bytes(physical_memory())}: use smaller sizes"
        )


# Values kept per step and batch row, in units of the hidden size, by a recorded forward + backward (pre- and
# post-activation gates, cell states, products, and their gradients): rough, on the generous side.
_PER_STEP = {"lstm": 40, "gru": 32, "rnn": 8, "mlp": 8}
_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def model_memory(
    kind: str, input_size: int, hidden: int, steps: int, batch: int, itemsize: int, retain_graph: bool = False
) -> int:
    """Estimated bytes for one recorded forward + backward of a one-layer ``kind`` ("lstm", "gru", "rnn",
    "mlp") model: its weights with their gradients and optimizer-sized copies, the input, and the graph.

    ``retain_graph=True`` (what drawing needs) also keeps every node's input gradients, among them one
    weight-sized gradient per time step: T times the weights, which dominates for large hidden sizes.
    """
    if kind == "mlp":
        params, steps = hidden * (input_size + 2) + 1, 1
    else:
        params = _GATES[kind] * hidden * (input_size + hidden + 2)
    graph = _PER_STEP[kind] * steps * batch * hidden + steps * batch * input_size
    if retain_graph:
        graph = 2 * graph + steps * params
    return int(itemsize * (4 * params + graph))


def fail(command: str, message: object) -> int:
    """Print ``tinygrad-lstm <command>: error: <message>`` as one line on stderr; return exit status 2."""
    text = _one_line(message)
    # Library errors name their function ("bptt: unknown cell"): no need to say the command twice.
    text = text.removeprefix(f"{command}: ")
    print(f"{PROG} {command}: error: {text}", file=sys.stderr)
    return 2


def run_guarded(command: str, fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand; bad input (``UsageError``, ValueError, TypeError, OSError, MemoryError) becomes one line
    on stderr and exit status 2, Ctrl-C exit status 130. ``TINYGRAD_LSTM_TRACEBACK=1`` lets errors through."""
    if os.environ.get(TRACEBACK_ENV):  # a developer chasing a bug wants the traceback, not the summary
        return int(fn(args))
    try:
        return int(fn(args))
    except KeyboardInterrupt:
        print(f"{PROG} {command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        return fail(command, "out of memory: use smaller sizes")
    except OSError as e:
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        return fail(command, f"{e.strerror or e}{where}")
    except (UsageError, ValueError, TypeError) as e:
        return fail(command, e)
