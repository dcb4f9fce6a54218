"""save/load: round trips of model and optimizer state, refusal of bad files, atomic replacement."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import tinygrad_lstm as tl
import tinygrad_lstm.nn as nn
from tinygrad_lstm import Tensor, default_dtype, load, manual_seed, optim, save


def _model():
    with default_dtype(np.float64):
        return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.BatchNorm1d(5), nn.Linear(5, 2))


def _train(model, opt, steps=3, seed=0):
    r = np.random.default_rng(seed)
    for _ in range(steps):
        opt.zero_grad()
        x = Tensor(r.standard_normal((6, 3)))
        loss = (model(x) ** 2).mean()
        loss.backward()
        opt.step()


def _assert_same(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def test_exports():
    assert tl.save is save and tl.load is load
    assert tl.nn.Linear is nn.Linear and tl.optim.SGD is optim.SGD


def test_model_and_optimizer_round_trip_and_training_resumes_identically(tmp_path):
    manual_seed(0)
    model = _model()
    opt = optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    _train(model, opt)
    path = tmp_path / "ckpt.npz"
    save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 3, "note": "x", "none": None}, path)
    ck = load(path)
    _assert_same(ck["model"], model.state_dict())
    _assert_same(ck["optim"], opt.state_dict())  # int keys, tuple betas, ints and bools survive
    assert ck["epoch"] == 3 and ck["note"] == "x" and ck["none"] is None

    manual_seed(1)
    model2 = _model()
    opt2 = optim.Adam(model2.parameters(), lr=0.01, amsgrad=True)
    model2.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["optim"])
    _train(model, opt, seed=5)
    _train(model2, opt2, seed=5)
    _assert_same(model.state_dict(), model2.state_dict())


def test_round_trip_of_odd_values(tmp_path):
    obj = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "i64": np.array(7, np.int64),
        "bool": np.array([True, False]),
        "scalar": np.float32(1.5),
        "empty": np.zeros((0, 3)),
        "nested": [1, 2.5, (True, "s"), {"inner": np.ones(2)}],
        "nan": float("nan"),
        "inf": float("-inf"),
        "tensor": Tensor(np.ones(3)),
        5: "int key",
    }
    save(obj, tmp_path / "odd.npz")
    back = load(tmp_path / "odd.npz")
    assert isinstance(back["scalar"], np.float32) and back["scalar"] == 1.5
    np.testing.assert_array_equal(back["tensor"], np.ones(3))
    obj = {**obj, "tensor": np.ones(3)}
    _assert_same(back, obj)


def test_unsupported_objects_raise_type_error_naming_the_key(tmp_path):
    with pytest.raises(TypeError, match=r"model\.layer\.w"):
        save({"model": {"layer": {"w": object()}}}, tmp_path / "a.npz")
    with pytest.raises(TypeError, match=r"opt\[1\]"):
        save({"opt": [1, {1, 2}]}, tmp_path / "a.npz")
    with pytest.raises(TypeError, match="pickle"):
        save({"obj": np.array([{}], dtype=object)}, tmp_path / "a.npz")
    with pytest.raises(TypeError, match="key"):
        save({(1, 2): 3}, tmp_path / "a.npz")
    assert os.listdir(tmp_path) == []  # nothing written, not even a temporary file


def _bad_file(tmp_path, kind):
    path = tmp_path / f"{kind}.npz"
    good = tmp_path / "good.npz"
    save(_model().state_dict(), good)
    blob = good.read_bytes()
    if kind == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif kind == "corrupt":
        b = bytearray(blob)
        for i in range(200, len(b) - 200, 97):  # flip bytes inside the members (CRC mismatch)
            b[i] ^= 0xFF
        path.write_bytes(bytes(b))
    elif kind == "text":
        path.write_text("hello, I am not an archive\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "pickled_npy":
        with open(path, "wb") as f:
            np.save(f, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"w": np.ones(3)}))
    elif kind == "pickled_npz":
        np.savez(path, w=np.array([{"evil": 1}], dtype=object))
    elif kind == "plain_npz":
        np.savez(path, w=np.ones(3))
    elif kind == "npy":
        with open(path, "wb") as f:  # a file handle: np.save would append ".npy" to a path
            np.save(f, np.ones(3))
    return path


@pytest.mark.parametrize(
    "kind", ["truncated", "corrupt", "text", "empty", "pickled_npy", "pickle", "pickled_npz", "plain_npz", "npy"]
)
def test_bad_files_are_refused_with_a_clear_error_and_model_unchanged(tmp_path, kind):
    path = _bad_file(tmp_path, kind)
    model = _model()
    before = model.state_dict()
    with pytest.raises(ValueError, match="load: ") as info:
        model.load_state_dict(load(path))
    assert str(path) in str(info.value)
    if "pickle" in kind:
        assert "pickle" in str(info.value)
    _assert_same(model.state_dict(), before)


def test_wrong_shape_file_is_refused_and_model_unchanged(tmp_path):
    with default_dtype(np.float64):
        other = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.BatchNorm1d(4), nn.Linear(4, 2))
    save(other.state_dict(), tmp_path / "other.npz")
    model = _model()
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"0\.weight: shape \(4, 3\)"):
        model.load_state_dict(load(tmp_path / "other.npz"))
    _assert_same(model.state_dict(), before)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope"):
        load("/nonexistent/nope.npz")


def test_failed_write_leaves_the_old_file_intact_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    good = {"w": np.arange(4.0)}
    save(good, path)
    original = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")  # the crash happens mid-write
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save({"w": np.zeros(4)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    _assert_same(load(path), good)


def test_overwrite_replaces_file(tmp_path):
    path = tmp_path / "ckpt"  # any name: no extension is added
    save({"a": np.ones(2)}, path)
    save({"b": np.zeros(3)}, path)
    assert list(load(path)) == ["b"]
    assert os.listdir(tmp_path) == ["ckpt"]


def test_atomic_files_get_the_mode_a_plain_open_gives(tmp_path):
    import os

    from tinygrad_lstm.io import atomic_path

    mask = os.umask(0o022)
    try:
        save({"w": np.zeros(2)}, tmp_path / "m.npz")
        with atomic_path(tmp_path / "sub" / "t.txt") as tmp:
            tmp.write_text("hi")
        assert (tmp_path / "sub" / "t.txt").read_text() == "hi"
        for f in (tmp_path / "m.npz", tmp_path / "sub" / "t.txt"):
            assert f.stat().st_mode & 0o777 == 0o644
        assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["t.txt"]  # no temporary file left
    finally:
        os.umask(mask)


def test_atomic_path_leaves_the_old_file_on_error(tmp_path):
    from tinygrad_lstm.io import atomic_path

    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
