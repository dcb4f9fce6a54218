"""Non-recurrent layers with PyTorch's names, shapes, defaults and state_dict keys."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ..tensor import Tensor, get_default_dtype, where
from . import functional as F
from . import init
from .module import Module, Parameter


def _dtype(dtype: Any) -> np.dtype:
    return np.dtype(dtype) if dtype is not None else get_default_dtype()


def _positive(name: str, **kwargs: Any) -> None:
    for k, v in kwargs.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name}: {k} must be a non-negative int, got {v!r}")


class Linear(Module):
    """y = x @ weight.T + bias for inputs of shape (..., in_features).

    weight (out_features, in_features) ~ kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in));
    bias (out_features,) ~ U(-1/sqrt(in), 1/sqrt(in)), as PyTorch.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: Any = None) -> None:
        _positive("Linear", in_features=in_features, out_features=out_features)
        self.in_features, self.out_features = int(in_features), int(out_features)
        dt = _dtype(dtype)
        self.weight = Parameter(np.empty((out_features, in_features), dt))
        self.bias = Parameter(np.empty((out_features,), dt)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw the parameters with PyTorch's default initialization."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the affine map to the last axis."""
        x = F._tensor(x, "Linear", "input")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: input shape {x.shape} does not end in in_features={self.in_features}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: integer indices of any shape -> (..., embedding_dim) rows of ``weight`` ~ N(0, 1).

    The gradient reaches ``weight`` through integer indexing (repeated indices add up). The row at
    ``padding_idx`` starts at zero and never receives a gradient, as in PyTorch.
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, dtype: Any = None
    ) -> None:
        _positive("Embedding", num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} must be within num_embeddings={num_embeddings}")
            padding_idx = int(padding_idx) % num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = int(num_embeddings), int(embedding_dim), padding_idx
        self.weight = Parameter(np.empty((num_embeddings, embedding_dim), _dtype(dtype)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw N(0, 1) rows and zero the padding row."""
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings: Any, freeze: bool = True, padding_idx: int | None = None) -> Embedding:
        """An Embedding holding a copy of a 2-D array; ``freeze`` turns its gradient off."""
        arr = np.array(embeddings.data if isinstance(embeddings, Tensor) else embeddings)
        if arr.ndim != 2 or arr.dtype.kind != "f":
            raise ValueError(f"Embedding.from_pretrained: need a 2-D float array, got shape {arr.shape} {arr.dtype}")
        emb = cls(arr.shape[0], arr.shape[1], padding_idx=padding_idx, dtype=arr.dtype)
        emb.weight.data = arr
        emb.weight.requires_grad = not freeze
        return emb

    def forward(self, indices: Any) -> Tensor:
        """Rows of ``weight`` for each index."""
        idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding: indices must be integers, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise IndexError(
                f"Embedding: indices must be in [0, {self.num_embeddings}), got values in [{idx.min()}, {idx.max()}]"
            )
        out = self.weight[idx]
        if self.padding_idx is not None and self.weight.requires_grad:
            # Same values, but positions holding padding_idx take them from a detached copy: no gradient.
            pad = (idx == self.padding_idx)[..., None]
            if pad.any():
                out = where(pad, out.detach(), out)
        return out

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training; the identity in eval mode."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: probability p must be in [0, 1], got {p}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        """Drop and rescale (training) or pass through (eval)."""
        x = F._tensor(x, "Dropout", "input")
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class BatchNorm1d(Module):
    """Batch normalization over (N, C) or (N, C, L) inputs, with PyTorch's semantics and buffer names.

    Training: normalize with the batch mean and biased variance, and update ``running_mean`` /
    ``running_var`` (unbiased variance) with ``momentum`` (``None``: cumulative average). Eval: normalize
    with the running statistics. ``num_batches_tracked`` counts training batches, so a PyTorch state_dict
    loads as is.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = None,
    ) -> None:
        _positive("BatchNorm1d", num_features=num_features)
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        dt = _dtype(dtype)
        self.weight = Parameter(np.ones(num_features, dt)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dt)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dt))
            self.register_buffer("running_var", np.ones(num_features, dt))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))
        else:
            object.__setattr__(self, "running_mean", None)
            object.__setattr__(self, "running_var", None)
            object.__setattr__(self, "num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, batch count 0."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def forward(self, x: Tensor) -> Tensor:
        """Normalize each channel (axis 1)."""
        x = F._tensor(x, "BatchNorm1d", "input")
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm1d: expected input of shape (N, {self.num_features}) or (N, {self.num_features}, L), "
                f"got {x.shape}"
            )
        axes = (0,) if x.ndim == 2 else (0, 2)
        bshape = (1, self.num_features) if x.ndim == 2 else (1, self.num_features, 1)
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            n = x.data.size // self.num_features
            if n <= 1:
                raise ValueError(
                    f"BatchNorm1d: expected more than 1 value per channel when training, got input {x.shape}"
                )
            mean = x.mean(axis=axes, keepdims=True)
            centered = x - mean
            var = (centered * centered).mean(axis=axes, keepdims=True)  # biased: used to normalize
            if self.training and self.track_running_stats:
                self._update_running_stats(mean.data.reshape(-1), var.data.reshape(-1), n)
        else:
            centered = x - self.running_mean.reshape(bshape).astype(x.dtype)
            var = Tensor(self.running_var.reshape(bshape).astype(x.dtype))
        out = centered / (var + self.eps).sqrt()
        if self.affine:
            out = out * self.weight.reshape(bshape) + self.bias.reshape(bshape)
        return out

    def _update_running_stats(self, mean: np.ndarray, var: np.ndarray, n: int) -> None:
        """Exponential (or cumulative) moving averages of the batch statistics; no graph is recorded."""
        self.num_batches_tracked += 1
        m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else float(self.momentum)
        dt = self.running_mean.dtype
        self.running_mean[...] = ((1 - m) * self.running_mean + m * mean).astype(dt)
        self.running_var[...] = ((1 - m) * self.running_var + m * var * (n / (n - 1))).astype(dt)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", ... (or by the keys of a dict), as PyTorch."""

    def __init__(self, *modules: Module | dict[str, Module]) -> None:
        if len(modules) == 1 and isinstance(modules[0], dict):
            items = [(str(k), m) for k, m in modules[0].items()]
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        object.__setattr__(self, "_layers", [])
        for name, m in items:
            self._add(name, m)

    def _add(self, name: str, m: Module) -> None:
        if not isinstance(m, Module):
            raise TypeError(f"Sequential: entry {name} is a {type(m).__name__}, not a Module")
        if "." in name or name == "":
            raise ValueError(f"Sequential: invalid module name {name!r}")
        m._set_scope_name(name)
        self._layers.append((name, m))

    def append(self, module: Module) -> Sequential:
        """Add a module at the end (named by its position)."""
        self._add(str(len(self._layers)), module)
        return self

    def _named_members(self) -> Iterator[tuple[str, Any]]:
        yield from self._layers

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[Module]:
        return (m for _, m in self._layers)

    def __getitem__(self, i: int | slice) -> Module:
        if isinstance(i, slice):
            return Sequential(*[m for _, m in self._layers[i]])
        return self._layers[i][1]

    def forward(self, x: Any) -> Any:
        """Feed the input through every module in order."""
        for _, m in self._layers:
            x = m(x)
        return x


def _check_module(owner: str, name: str, m: Any) -> Module:
    if not isinstance(m, Module):
        raise TypeError(f"{owner}: entry {name} is a {type(m).__name__}, not a Module")
    return m


class ModuleList(Module):
    """A list of modules whose parameters belong to the owner: children named "0", "1", ... as PyTorch.

    Indexing, ``len``, iteration, ``append``, ``extend``, ``insert``, ``+=``, item assignment and ``del`` work
    as on a list (names are renumbered after ``insert`` and ``del``, as PyTorch). It has no ``forward``.
    """

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        object.__setattr__(self, "_items", [])
        if modules is not None:
            self.extend(modules)

    def _set_scope_name(self, name: str) -> None:
        super()._set_scope_name(name)
        self._renumber()

    def _renumber(self) -> None:
        # An item is called directly (self.layers[0](x)), not through the list: its scope carries the full name.
        prefix = self.__dict__.get("_scope_name")
        for i, m in enumerate(self._items):
            object.__setattr__(m, "_scope_name", f"{prefix}.{i}" if prefix else str(i))

    def _index(self, i: Any) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"ModuleList: indices must be integers or slices, got {type(i).__name__}")
        n = len(self._items)
        if not -n <= i < n:
            raise IndexError(f"ModuleList: index {i} is out of range for {n} modules")
        return int(i) % n

    def _named_members(self) -> Iterator[tuple[str, Any]]:
        return ((str(i), m) for i, m in enumerate(self._items))

    def append(self, module: Module) -> ModuleList:
        """Add a module at the end; returns self."""
        self._items.append(_check_module("ModuleList", str(len(self._items)), module))
        self._renumber()
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Append every module of an iterable; returns self."""
        try:
            items = list(modules)
        except TypeError:
            raise TypeError(f"ModuleList: expected an iterable of Modules, got a {type(modules).__name__}") from None
        for m in items:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Insert a module before ``index``."""
        self._items.insert(int(index), _check_module("ModuleList", str(index), module))
        self._renumber()

    def __iadd__(self, modules: Iterable[Module]) -> ModuleList:
        return self.extend(modules)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._items))

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return ModuleList(self._items[i])
        return self._items[self._index(i)]

    def __setitem__(self, i: int, module: Module) -> None:
        self._items[self._index(i)] = _check_module("ModuleList", str(i), module)
        self._renumber()

    def __delitem__(self, i: int | slice) -> None:
        if isinstance(i, slice):
            del self._items[i]
        else:
            del self._items[self._index(i)]
        self._renumber()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Not defined: call the items (as PyTorch, a ModuleList is a container, not a layer)."""
        raise NotImplementedError("ModuleList has no forward(): iterate over it and call its modules")


class ModuleDict(Module):
    """An ordered dict of modules whose parameters belong to the owner: children named by their keys.

    ``d[key]``, ``d[key] = m``, ``del d[key]``, ``in``, ``len``, iteration over keys, ``keys``, ``values``,
    ``items``, ``update``, ``pop`` and ``clear`` work as on a dict. It has no ``forward``.
    """

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None) -> None:
        object.__setattr__(self, "_items", {})
        if modules is not None:
            self.update(modules)

    def _set_scope_name(self, name: str) -> None:
        super()._set_scope_name(name)
        for k, m in self._items.items():
            object.__setattr__(m, "_scope_name", f"{name}.{k}")

    def _named_members(self) -> Iterator[tuple[str, Any]]:
        return iter(list(self._items.items()))

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(key, str) or "." in key or key == "":
            raise KeyError(f"ModuleDict: a key must be a non-empty string without '.', got {key!r}")
        self._items[key] = _check_module("ModuleDict", repr(key), module)
        prefix = self.__dict__.get("_scope_name")
        object.__setattr__(module, "_scope_name", f"{prefix}.{key}" if prefix else key)

    def __getitem__(self, key: str) -> Module:
        if key not in self._items:
            raise KeyError(f"ModuleDict: no module {key!r}; keys are {list(self._items)}")
        return self._items[key]

    def __delitem__(self, key: str) -> None:
        self.pop(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def keys(self) -> list[str]:
        """The keys, in insertion order."""
        return list(self._items)

    def values(self) -> list[Module]:
        """The modules, in insertion order."""
        return list(self._items.values())

    def items(self) -> list[tuple[str, Module]]:
        """(key, module) pairs, in insertion order."""
        return list(self._items.items())

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        """Add or replace modules from a mapping or an iterable of (key, module) pairs."""
        pairs = modules.items() if isinstance(modules, (Mapping, ModuleDict)) else modules
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"ModuleDict.update: expected (key, module) pairs, got {pair!r}")
            self[pair[0]] = pair[1]

    def pop(self, key: str) -> Module:
        """Remove ``key`` and return its module."""
        m = self[key]
        del self._items[key]
        return m

    def clear(self) -> None:
        """Remove every module."""
        self._items.clear()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Not defined: call the items (as PyTorch, a ModuleDict is a container, not a layer)."""
        raise NotImplementedError("ModuleDict has no forward(): call its modules by key")


class LayerNorm(Module):
    """Layer normalization over the trailing ``normalized_shape`` axes, PyTorch's ``nn.LayerNorm``.

    y = (x - mean) / sqrt(var + eps) * weight + bias, with the mean and the biased variance over the last
    ``len(normalized_shape)`` axes of each sample; ``weight`` (ones) and ``bias`` (zeros) have shape
    ``normalized_shape`` when ``elementwise_affine`` (``bias=False`` drops the bias). Built from Tensor ops.
    """

    def __init__(
        self,
        normalized_shape: int | Iterable[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: Any = None,
    ) -> None:
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
        if not shape or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in shape):
            raise ValueError(f"LayerNorm: normalized_shape must be positive ints, got {normalized_shape!r}")
        if not eps >= 0:
            raise ValueError(f"LayerNorm: eps must be >= 0, got {eps!r}")
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps, self.elementwise_affine = float(eps), bool(elementwise_affine)
        dt = _dtype(dtype)
        self.weight = Parameter(np.ones(self.normalized_shape, dt)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, dt)) if elementwise_affine and bias else None

    def forward(self, x: Any) -> Tensor:
        """Normalize each sample over the trailing axes."""
        x = F._tensor(x, "LayerNorm", "input")
        k = len(self.normalized_shape)
        if x.shape[x.ndim - k :] != self.normalized_shape or x.ndim < k:
            raise ValueError(
                f"LayerNorm: input shape {x.shape} does not end in normalized_shape={self.normalized_shape}"
            )
        axes = tuple(range(x.ndim - k, x.ndim))
        centered = x - x.mean(axis=axes, keepdims=True)
        var = (centered * centered).mean(axis=axes, keepdims=True)
        out = centered / (var + self.eps).sqrt()
        if self.weight is not None:
            out = out * self.weight
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class Flatten(Module):
    """Flatten axes ``start_dim`` .. ``end_dim`` into one (by default all but the batch axis)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Reshape with the chosen axes merged."""
        x = F._tensor(x, "Flatten", "input")
        nd = max(x.ndim, 1)
        s, e = self.start_dim, self.end_dim
        if not (-nd <= s < nd and -nd <= e < nd):
            raise ValueError(f"Flatten: start_dim={s}, end_dim={e} out of range for input shape {x.shape}")
        s, e = s % nd, e % nd
        if s > e:
            raise ValueError(f"Flatten: start_dim={self.start_dim} comes after end_dim={self.end_dim} for {x.shape}")
        if x.ndim == 0:
            return x.reshape(1)
        shape = x.shape
        return x.reshape(*shape[:s], int(np.prod(shape[s : e + 1])), *shape[e + 1 :])

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Identity(Module):
    """Returns its input unchanged; constructor arguments are accepted and ignored, as PyTorch's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def forward(self, x: Any) -> Any:
        """The input itself."""
        return x


class Sigmoid(Module):
    """Elementwise logistic function."""

    def forward(self, x: Tensor) -> Tensor:
        """sigmoid(x)."""
        x = F._tensor(x, "Sigmoid", "input")
        return F.sigmoid(x)


class Tanh(Module):
    """Elementwise hyperbolic tangent."""

    def forward(self, x: Tensor) -> Tensor:
        """tanh(x)."""
        x = F._tensor(x, "Tanh", "input")
        return F.tanh(x)


class ReLU(Module):
    """Elementwise max(x, 0)."""

    def forward(self, x: Tensor) -> Tensor:
        """relu(x)."""
        x = F._tensor(x, "ReLU", "input")
        return F.relu(x)


class LeakyReLU(Module):
    """x for x > 0, else ``negative_slope * x``."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = float(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        """leaky_relu(x)."""
        x = F._tensor(x, "LeakyReLU", "input")
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Hardsigmoid(Module):
    """relu6(x + 3) / 6."""

    def forward(self, x: Tensor) -> Tensor:
        """hard_sigmoid(x)."""
        x = F._tensor(x, "Hardsigmoid", "input")
        return F.hard_sigmoid(x)


def _implicit_dim(name: str, ndim: int) -> int:
    # PyTorch's legacy choice when dim is not given (it warns too).
    warnings.warn(f"{name}: implicit dimension choice is deprecated; pass dim", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    """Softmax along ``dim``."""

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """softmax(x, dim)."""
        x = F._tensor(x, "Softmax", "input")
        dim = self.dim if self.dim is not None else _implicit_dim("Softmax", x.ndim)
        return F.softmax(x, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """Log-softmax along ``dim``."""

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """log_softmax(x, dim)."""
        x = F._tensor(x, "LogSoftmax", "input")
        dim = self.dim if self.dim is not None else _implicit_dim("LogSoftmax", x.ndim)
        return F.log_softmax(x, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
