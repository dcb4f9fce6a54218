"""Variable-length sequence batches, as ``torch.nn.utils.rnn``: padding, packing and unpacking.

A *packed* batch keeps only the real steps of each sequence, time-major: first step 0 of every sequence, then
step 1 of every sequence that has one, and so on, with the sequences sorted by decreasing length. ``batch_sizes[t]``
says how many sequences have step t, so the rows of step t are ``data[sum(batch_sizes[:t]):][:batch_sizes[t]]``.
``RNN``/``LSTM``/``GRU`` take a ``PackedSequence`` and run each step on its active rows only: padding never enters
the recurrence and gets no gradient.

Everything here is built from Tensor ops (one gather by an index array per call), so gradients flow from the
packed data back to the padded input and from the padded output back to the packed data.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ...tensor import Tensor, cat
from ..functional import _tensor


class PackedSequence(NamedTuple):
    """A packed batch (torch's fields): ``data`` (sum(lengths), *) Tensor, ``batch_sizes`` (T,) int64,
    ``sorted_indices`` (B,) int64 or None (the batch was already sorted), ``unsorted_indices`` its inverse.

    Row j of the sorted batch is sequence ``sorted_indices[j]`` of the caller's batch; sequence b sits at
    sorted position ``unsorted_indices[b]``.
    """

    data: Tensor
    batch_sizes: np.ndarray
    sorted_indices: np.ndarray | None = None
    unsorted_indices: np.ndarray | None = None


def _lengths(lengths: Any, batch: int, fn: str) -> np.ndarray:
    """``lengths`` as a 1-D int64 array of ``batch`` positive entries, or a ValueError naming ``fn``."""
    raw = lengths.data if isinstance(lengths, Tensor) else lengths
    try:
        arr = np.asarray(raw)
    except Exception as e:  # e.g. a torch tensor on another device
        raise TypeError(
            f"{fn}: lengths must be a list or 1-D array of ints, got {type(lengths).__name__} ({e})"
        ) from None
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(f"{fn}: lengths must be a 1-D sequence of ints, got shape {arr.shape} dtype {arr.dtype}")
    if arr.shape[0] != batch:
        raise ValueError(f"{fn}: {arr.shape[0]} lengths for a batch of {batch} sequences")
    if batch and arr.min() <= 0:
        raise ValueError(f"{fn}: every length must be > 0, got {arr.tolist()}")
    return arr.astype(np.int64)


def pad_sequence(
    sequences: Sequence[Any], batch_first: bool = False, padding_value: float = 0.0, padding_side: str = "right"
) -> Tensor:
    """Stack sequences of shapes (L_i, *) into one (T, B, *) Tensor (``batch_first``: (B, T, *)), T = max L_i.

    Shorter sequences are filled with ``padding_value`` after their end (``padding_side="left"``: before their
    start). The gradient of each sequence is its slice of the padded gradient.
    """
    fn = "pad_sequence"
    if isinstance(sequences, (Tensor, np.ndarray)) or not isinstance(sequences, Sequence) or not sequences:
        raise TypeError(f"{fn}: sequences must be a non-empty list of Tensors (L_i, *), got {type(sequences).__name__}")
    if padding_side not in ("right", "left"):
        raise ValueError(f"{fn}: padding_side must be 'right' or 'left', got {padding_side!r}")
    seqs = [_tensor(s, fn, f"sequences[{i}]") for i, s in enumerate(sequences)]
    first = seqs[0]
    for i, s in enumerate(seqs):
        if s.ndim == 0 or s.shape[1:] != first.shape[1:] or s.dtype != first.dtype:
            raise ValueError(
                f"{fn}: every sequence must be (L_i, *) with the same trailing shape and dtype; sequences[0] is "
                f"{first.shape} {first.dtype}, sequences[{i}] is {s.shape} {s.dtype}"
            )
    lengths = np.array([s.shape[0] for s in seqs], np.int64)
    T, B = int(lengths.max()), len(seqs)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pad_row = int(lengths.sum())  # index of the padding row appended after all the real rows
    idx = np.full((T, B), pad_row, np.int64)
    for b in range(B):
        t0 = 0 if padding_side == "right" else T - lengths[b]
        idx[t0 : t0 + lengths[b], b] = starts[b] + np.arange(lengths[b])
    pad = Tensor(np.full((1, *first.shape[1:]), padding_value, first.dtype))
    out = cat([*seqs, pad], axis=0)[idx.T if batch_first else idx]
    return out


def pack_padded_sequence(
    input: Any, lengths: Any, batch_first: bool = False, enforce_sorted: bool = True
) -> PackedSequence:
    """Pack a padded (T, B, *) batch (``batch_first``: (B, T, *)) whose sequence b has ``lengths[b]`` steps.

    With ``enforce_sorted`` the lengths must be in decreasing order (``sorted_indices`` is then None); otherwise
    the batch is sorted by decreasing length (stable) and the permutation kept to undo it.
    """
    fn = "pack_padded_sequence"
    x = _tensor(input, fn, "input")
    if x.ndim < 2:
        raise ValueError(f"{fn}: input must be at least 2-D (T, B, *) or (B, T, *), got shape {x.shape}")
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    lens = _lengths(lengths, B, fn)
    if B == 0:
        raise ValueError(f"{fn}: the batch is empty (input shape {x.shape})")
    if lens.max() > T:
        raise ValueError(f"{fn}: a length of {int(lens.max())} exceeds the {T} steps of the input {x.shape}")
    if enforce_sorted:
        if np.any(np.diff(lens) > 0):
            raise ValueError(
                f"{fn}: lengths {lens.tolist()} are not in decreasing order; sort the batch or pass "
                "enforce_sorted=False"
            )
        sorted_idx = unsorted_idx = None
        order = np.arange(B)
    else:
        order = np.argsort(-lens, kind="stable")
        sorted_idx, unsorted_idx = order.astype(np.int64), np.argsort(order).astype(np.int64)
    sorted_lens = lens[order]
    batch_sizes = (sorted_lens[None, :] > np.arange(int(sorted_lens[0]))[:, None]).sum(axis=1).astype(np.int64)
    # Row (t, j) of the packed data is step t of sequence order[j]; one gather from the flattened input.
    t_idx = np.concatenate([np.full(n, t) for t, n in enumerate(batch_sizes)])
    b_idx = np.concatenate([order[:n] for n in batch_sizes])
    flat = x.reshape(T * B, *x.shape[2:])
    rows = b_idx * T + t_idx if batch_first else t_idx * B + b_idx
    return PackedSequence(flat[rows], batch_sizes, sorted_idx, unsorted_idx)


def pad_packed_sequence(
    sequence: PackedSequence, batch_first: bool = False, padding_value: float = 0.0, total_length: int | None = None
) -> tuple[Tensor, np.ndarray]:
    """Undo ``pack_padded_sequence``: ``(padded, lengths)``, padded (T, B, *) (``batch_first``: (B, T, *)) in
    the caller's original batch order, T = ``total_length`` or the longest length; lengths an int64 array."""
    fn = "pad_packed_sequence"
    data, batch_sizes, _, unsorted = _check_packed(sequence, fn)
    T = len(batch_sizes)
    if total_length is not None:
        if isinstance(total_length, bool) or not isinstance(total_length, numbers.Integral) or total_length < T:
            raise ValueError(f"{fn}: total_length must be an int >= the longest length {T}, got {total_length!r}")
        T = int(total_length)
    B = int(batch_sizes[0])
    sorted_lens = (batch_sizes[None, :] > np.arange(B)[:, None]).sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)[:-1]])
    n = data.shape[0]
    idx = np.full((T, B), n, np.int64)  # n: the padding row appended below
    for t, size in enumerate(batch_sizes):
        idx[t, :size] = offsets[t] + np.arange(size)
    if unsorted is not None:
        idx, sorted_lens = idx[:, unsorted], sorted_lens[unsorted]
    pad = Tensor(np.full((1, *data.shape[1:]), padding_value, data.dtype))
    out = cat([data, pad], axis=0)[idx.T if batch_first else idx]
    return out, sorted_lens.astype(np.int64)


def pack_sequence(sequences: Sequence[Any], enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of (L_i, *) sequences: ``pack_padded_sequence(pad_sequence(sequences), lengths)``."""
    padded = pad_sequence(sequences)
    lengths = [int(np.shape(s)[0]) if not isinstance(s, Tensor) else s.shape[0] for s in sequences]
    return pack_padded_sequence(padded, lengths, enforce_sorted=enforce_sorted)


def unpad_sequence(padded_sequences: Any, lengths: Any, batch_first: bool = False) -> list[Tensor]:
    """Split a padded (T, B, *) batch (``batch_first``: (B, T, *)) back into B Tensors of (lengths[b], *)."""
    fn = "unpad_sequence"
    x = _tensor(padded_sequences, fn, "padded_sequences")
    if x.ndim < 2:
        raise ValueError(f"{fn}: padded_sequences must be at least 2-D, got shape {x.shape}")
    T, B = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    lens = _lengths(lengths, B, fn)
    if B and lens.max() > T:
        raise ValueError(f"{fn}: a length of {int(lens.max())} exceeds the {T} steps of the input {x.shape}")
    return [x[b, : lens[b]] if batch_first else x[: lens[b], b] for b in range(B)]


def unpack_sequence(packed_sequences: PackedSequence) -> list[Tensor]:
    """The sequences of a packed batch, in the caller's original order, each (L_i, *)."""
    padded, lengths = pad_packed_sequence(packed_sequences)
    return unpad_sequence(padded, lengths)


def _check_packed(sequence: Any, fn: str) -> tuple[Tensor, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The fields of a PackedSequence, checked against each other (a hand-built one may be inconsistent)."""
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"{fn}: expected a PackedSequence, got {type(sequence).__name__}")
    data = _tensor(sequence.data, fn, "data")
    sizes = np.asarray(sequence.batch_sizes)
    if sizes.ndim != 1 or not sizes.size or sizes.dtype.kind not in "iu" or sizes.min() <= 0:
        raise ValueError(f"{fn}: batch_sizes must be a non-empty 1-D array of positive ints, got {sizes!r}")
    if np.any(np.diff(sizes) > 0):
        raise ValueError(f"{fn}: batch_sizes must not increase, got {sizes.tolist()}")
    if data.ndim == 0 or data.shape[0] != int(sizes.sum()):
        raise ValueError(f"{fn}: data has shape {data.shape} but batch_sizes sum to {int(sizes.sum())} rows")
    B = int(sizes[0])
    perms = []
    for name in ("sorted_indices", "unsorted_indices"):
        p = getattr(sequence, name)
        if p is not None:
            p = np.asarray(p)
            if p.shape != (B,) or p.dtype.kind not in "iu" or not np.array_equal(np.sort(p), np.arange(B)):
                raise ValueError(f"{fn}: {name} must be a permutation of range({B}), got {p!r}")
        perms.append(p)
    sorted_idx, unsorted_idx = perms
    if sorted_idx is not None and unsorted_idx is None:  # as torch: the inverse is derived when left out
        unsorted_idx = np.argsort(sorted_idx)
    if (sorted_idx is None) != (unsorted_idx is None) or (
        sorted_idx is not None and not np.array_equal(sorted_idx[unsorted_idx], np.arange(B))
    ):
        raise ValueError(
            f"{fn}: sorted_indices and unsorted_indices must be inverse permutations "
            "(unsorted_indices alone is not enough)"
        )
    return data, sizes.astype(np.int64), sorted_idx, unsorted_idx


__all__ = [
    "PackedSequence",
    "pack_padded_sequence",
    "pack_sequence",
    "pad_packed_sequence",
    "pad_sequence",
    "unpack_sequence",
    "unpad_sequence",
]
