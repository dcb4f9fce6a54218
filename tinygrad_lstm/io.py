"""Save and load state dicts as ``.npz`` files: no pickle, atomic replacement, clear errors.

A state dict (model: name -> array; optimizer: nested dicts and lists of arrays and numbers) is flattened:
every array becomes one npz member ``a0``, ``a1``, ...; the structure, the keys (with their types) and the
plain numbers/strings go into a small JSON manifest stored as a uint8 array member ``__manifest__``. Loading
uses ``allow_pickle=False`` throughout, so a file can never run code.

The file is first written to a temporary file in the target's directory, flushed and fsynced, then moved
over the target with ``os.replace`` (atomic on POSIX and Windows): a crash leaves either the old file or
the new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .tensor import Tensor

_FORMAT = "tinygrad_lstm.save/1"
_MANIFEST = "__manifest__"


def _encode(obj: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """One node of the manifest; arrays are moved into ``arrays``. ``key`` names the entry in errors."""
    if isinstance(obj, Tensor):
        obj = obj.data
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        if arr.dtype.kind not in "biufc" or arr.dtype.hasobject:
            raise TypeError(f"save: {key}: arrays of dtype {arr.dtype} cannot be saved without pickle")
        name = f"a{len(arrays)}"
        arrays[name] = arr
        return {"t": "array", "k": name, "scalar": isinstance(obj, np.generic)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        kind = type(obj).__name__ if obj is not None else "none"
        return {"t": kind, "v": obj}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(f"save: {key}: dict key {k!r} of type {type(k).__name__} is not a str or int")
            items.append(["i" if isinstance(k, int) else "s", k, _encode(v, f"{key}.{k}" if key else str(k), arrays)])
        return {"t": "dict", "items": items}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {"t": kind, "items": [_encode(v, f"{key}[{i}]", arrays) for i, v in enumerate(obj)]}
    raise TypeError(f"save: {key or '<root>'}: cannot save an object of type {type(obj).__name__}")


def _decode(node: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    bad = ValueError(f"load: {path}: the manifest is malformed")
    if not isinstance(node, dict) or "t" not in node:
        raise bad
    t = node["t"]
    if t == "array":
        if node.get("k") not in arrays:
            raise ValueError(f"load: {path}: array {node.get('k')!r} listed in the manifest is missing")
        arr = arrays[node["k"]]
        return arr[()] if node.get("scalar") else arr
    if t in ("none", "bool", "int", "float", "str"):
        return node.get("v")
    if t == "dict":
        out = {}
        for item in node.get("items", ()):
            if not isinstance(item, list) or len(item) != 3:
                raise bad
            kt, k, v = item
            out[int(k) if kt == "i" else str(k)] = _decode(v, arrays, path)
        return out
    if t in ("list", "tuple"):
        items = [_decode(v, arrays, path) for v in node.get("items", ())]
        return items if t == "list" else tuple(items)
    raise bad


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, move it over ``path`` atomically.

    Whatever the block writes to the temporary path is fsynced, given the mode a plain ``open()`` would have
    given it (mkstemp makes files private), then renamed over ``path``: readers and crashes see either the old
    file or the new one, never half of one. On error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    try:  # make the rename itself durable; not possible everywhere (e.g. Windows), and not needed for safety
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` (a state dict: nested dicts/lists/tuples of arrays, Tensors, numbers, strings, None).

    The file is replaced atomically; unsupported objects raise TypeError naming their key.
    """
    arrays: dict[str, np.ndarray] = {}
    manifest = {"format": _FORMAT, "root": _encode(obj, "", arrays)}
    blob = json.dumps(manifest, allow_nan=True).encode("utf-8")
    arrays[_MANIFEST] = np.frombuffer(blob, dtype=np.uint8)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
        np.savez(f, **arrays)


def load(path: str | os.PathLike) -> Any:
    """Read what ``save`` wrote. A missing file raises FileNotFoundError; a truncated, corrupt, non-npz or
    pickled file raises ValueError naming the path.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no such file: {path}")
    with open(path, "rb") as f:
        head = f.read(6)
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):
        what = "pickled data, which is never loaded" if head[:1] == b"\x80" else "unrecognized content"
        raise ValueError(f"load: {path} is not a tinygrad_lstm save file (.npz zip archive): it holds {what}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"load: {path} holds a single .npy array, not a tinygrad_lstm save file (.npz)")
        with data:
            arrays = {k: data[k] for k in data.files}  # reads (and CRC-checks) every member now
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as e:
        if str(e).startswith("load: "):
            raise
        if "pickle" in str(e).lower():
            reason = "it contains pickled data, which is never loaded"
        elif isinstance(e, (zipfile.BadZipFile, EOFError)):
            reason = f"the archive is truncated or corrupt ({e})"
        else:
            reason = str(e)
        raise ValueError(f"load: {path} is not a valid tinygrad_lstm save file: {reason}") from None
    if _MANIFEST not in arrays:
        raise ValueError(f"load: {path} is an npz file without a tinygrad_lstm manifest")
    try:
        manifest = json.loads(arrays.pop(_MANIFEST).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"load: {path}: the manifest is corrupt ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        raise ValueError(f"load: {path}: unknown format {manifest.get('format') if isinstance(manifest, dict) else ''}")
    return _decode(manifest.get("root"), arrays, path)
