"""The command line's bad input: one line on stderr, exit status 2, no traceback, nothing written (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinygrad_lstm import cli
from tinygrad_lstm.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m tinygrad_lstm ARGS`` in a fresh interpreter importing this checkout."""
    env = {k: v for k, v in os.environ.items() if k != cli.TRACEBACK_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-m", "tinygrad_lstm", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def _assert_one_line_error(done: subprocess.CompletedProcess, command: str, *words: str) -> None:
    err = done.stderr
    assert done.returncode == 2, (done.returncode, err)
    assert "Traceback" not in err and err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"tinygrad-lstm {command}: error: "), err
    for w in words:
        assert w in err, (w, err)
    assert done.stdout == ""


@pytest.fixture
def unwritable(tmp_path: Path) -> Path:
    """A directory no file can be created in: a read-only one, or (as root, whom permissions do not stop) /proc."""
    if IS_ROOT:
        if not Path("/proc").is_dir():
            pytest.skip("running as root without /proc: no directory here refuses a new file")
        yield Path("/proc")
        return
    d = tmp_path / "read_only"
    d.mkdir()
    d.chmod(0o500)
    yield d
    d.chmod(0o700)


COMMANDS = {  # the output option of each subcommand, and small sizes so a wrongly accepted run is quick
    "graph": ["graph", "--steps", "2", "--hidden", "3"],
    "bptt": ["bptt", "--steps", "5", "--hidden", "3", "--batch", "2"],
    "demo": ["demo", "--quick"],
}
FILE_NAME = {"graph": "g.svg", "bptt": "b.png", "demo": "demo_out"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_output_under_a_missing_directory(tmp_path: Path, command: str) -> None:
    out = tmp_path / "missing" / "deeper" / FILE_NAME[command]
    done = _run([*COMMANDS[command], "--out", str(out)], tmp_path)
    _assert_one_line_error(done, command, "--out", "does not exist")
    assert not (tmp_path / "missing").exists()  # nothing was created on the way


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_output_whose_parent_is_a_file(tmp_path: Path, command: str) -> None:
    (tmp_path / "notes.txt").write_text("a file")
    done = _run([*COMMANDS[command], "--out", str(tmp_path / "notes.txt" / FILE_NAME[command])], tmp_path)
    _assert_one_line_error(done, command, "--out", "is a file, not a directory")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_output_in_an_unwritable_directory(tmp_path: Path, unwritable: Path, command: str) -> None:
    done = _run([*COMMANDS[command], "--out", str(unwritable / FILE_NAME[command])], tmp_path)
    _assert_one_line_error(done, command, "--out", "cannot create a file in")
    assert not (unwritable / FILE_NAME[command]).exists()
    assert not [n for n in os.listdir(unwritable) if n.startswith(".tinygrad_lstm_probe.")]  # the probe is gone


def test_demo_out_naming_a_file(tmp_path: Path) -> None:
    (tmp_path / "results").write_text("not a folder")
    done = _run(["demo", "--quick", "--out", str(tmp_path / "results")], tmp_path)
    _assert_one_line_error(done, "demo", "--out", "is a file, not a directory")
    assert (tmp_path / "results").read_text() == "not a folder"


@pytest.mark.parametrize("command", ["graph", "bptt"])
def test_a_huge_hidden_size_says_the_memory_it_would_need(tmp_path: Path, command: str) -> None:
    done = _run([command, "--hidden", "100000", "--out", str(tmp_path / FILE_NAME[command])], tmp_path)
    _assert_one_line_error(done, command, "--hidden 100000", "would need about", "of memory")
    # H = 100,000: the LSTM's weights alone are 4H(H + I) = 4e10 numbers, hundreds of GB whatever the dtype.
    need = done.stderr.split("would need about ")[1].split(" of memory")[0]
    assert need.endswith(("GB", "TB")) and float(need.split()[0]) > (100 if need.endswith("GB") else 0)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("value", ["-1", "nan"])
def test_a_negative_or_nan_seed(tmp_path: Path, command: str, value: str) -> None:
    done = _run([*COMMANDS[command], f"--seed={value}", "--out", str(tmp_path / FILE_NAME[command])], tmp_path)
    _assert_one_line_error(done, command, "--seed", "integer >= 0", value)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "x"])
def test_a_nan_or_infinite_forget_bias(tmp_path: Path, value: str) -> None:
    done = _run([*COMMANDS["bptt"], f"--forget-bias={value}", "--out", str(tmp_path / "b.png")], tmp_path)
    _assert_one_line_error(done, "bptt", "--forget-bias", value)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["graph", "--steps", "0"], ("--steps", ">= 1")),
        (["graph", "--out", "g.pdf"], ("--out", ".svg or .png")),
        (["bptt", "--cells", "rnn,lsmt"], ("unknown cell",)),
        (["bptt", "--out", "plot.txt"], ("--out", ".png")),
        (["graph", "--model", "transformer"], ("--model", "invalid choice")),
        (["bptt", "--study", "methods", "--methods", "bptt,adjoint"], ("unknown method 'adjoint'",)),
        (["bptt", "--study", "methods", "--lengths", "1,5"], ("lengths must be integers >= 2",)),
        (["bptt", "--study", "methods", "--hidden", "50000"], ("would need about", "memory")),
    ],
)
def test_other_bad_values(tmp_path: Path, args: list[str], words: tuple[str, ...]) -> None:
    _assert_one_line_error(_run(args, tmp_path), args[0], *words)


def test_no_or_an_unknown_command(tmp_path: Path) -> None:
    for args in ([], ["train"]):
        done = _run(args, tmp_path)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert done.stderr.startswith("tinygrad-lstm: error: ")


def test_a_negative_forget_bias_is_a_real_experiment(tmp_path: Path, capsys) -> None:
    # A negative bias closes the forget gates: legitimate input, so it runs (and writes SVG by its suffix).
    out = tmp_path / "closed.svg"
    assert main([*COMMANDS["bptt"], "--cells", "lstm", "--forget-bias", "-2", "--out", str(out)]) == 0
    assert out.read_text().lstrip().startswith("<?xml") and str(out) in capsys.readouterr().out


def test_the_traceback_switch_lets_errors_through(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
    with pytest.raises(ValueError, match="unknown cell"):
        main(["bptt", "--cells", "lsmt", "--out", str(tmp_path / "b.png")])


def test_memory_estimate_grows_with_each_size() -> None:
    base = cli.model_memory("lstm", 3, 64, 10, 4, 4)
    assert cli.model_memory("lstm", 3, 4096, 10, 4, 4) > 3 * cli.model_memory("lstm", 3, 2048, 10, 4, 4)  # ~H^2
    assert cli.model_memory("lstm", 3, 64, 20, 4, 4) > base and cli.model_memory("lstm", 3, 64, 10, 8, 4) > base
    assert cli.model_memory("lstm", 3, 64, 10, 4, 8) == 2 * base
    assert cli.model_memory("rnn", 3, 64, 10, 4, 4) < cli.model_memory("gru", 3, 64, 10, 4, 4) < base
    # A retained graph keeps one weight-sized gradient per step: measured 5.3 GB peak for this one (float32).
    assert 4.5e9 < cli.model_memory("lstm", 3, 2048, 50, 64, 4, retain_graph=True) < 8e9
    with pytest.raises(cli.UsageError, match=r"would need about 2\.0 TB of memory"):
        cli.check_memory(2e12, "this")
    cli.check_memory(1e6, "a small run")
