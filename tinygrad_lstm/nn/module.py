"""Module and Parameter: layers are plain callables whose parameters are found by walking attributes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from ..tensor import Tensor, no_grad, scope


class Parameter(Tensor):
    """A leaf Tensor that a Module owns and an optimizer updates; it learns its dotted name for graph labels."""

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True, dtype: Any = None, name: str | None = None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype, name=name)


class _IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` returns (torch's name): the keys it did not find, and the keys it did not use."""

    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return f"_IncompatibleKeys(missing_keys={self.missing_keys}, unexpected_keys={self.unexpected_keys})"


class RemovableHandle:
    """Returned by ``register_forward_hook``: ``remove()`` unregisters the hook (a second call does nothing)."""

    _next_id = 0

    def __init__(self, hooks: dict[int, Callable]) -> None:
        self._hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        """Unregister the hook."""
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


class Module:
    """Base class of layers: ``__call__`` runs ``forward`` inside ``scope(<attribute name>)``.

    Parameters, sub-modules and buffers are found by walking the instance's attributes, including lists and
    dicts of them, in assignment order; names are dotted paths as in PyTorch (``lstm.weight_hh_l0``).
    """

    training: bool = True

    def __setattr__(self, key: str, value: Any) -> None:
        # Children learn the name they are stored under: it labels their scope and their parameters.
        if isinstance(value, Module):
            value._set_scope_name(key)
        elif isinstance(value, Parameter) and value.name is None:
            value.name = key
        elif isinstance(value, (list, tuple, dict)):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                if isinstance(v, Module):
                    v._set_scope_name(f"{key}.{k}")
        object.__setattr__(self, key, value)

    def _set_scope_name(self, name: str) -> None:
        """Remember the attribute name this module is stored under (containers pass it on to their items)."""
        object.__setattr__(self, "_scope_name", name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with scope(self.__dict__.get("_scope_name") or type(self).__name__):
            out = self.forward(*args, **kwargs)
        hooks = self.__dict__.get("_forward_hooks")
        if hooks:
            for hook in list(hooks.values()):  # a copy: a hook may remove itself
                result = hook(self, args, out)
                if result is not None:
                    out = result
        return out

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], Any]) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after every forward; a non-None result replaces the output.

        Returns a handle whose ``remove()`` unregisters the hook (as PyTorch; keyword arguments of the call
        are not passed to the hook).
        """
        if not callable(hook):
            raise TypeError(f"{type(self).__name__}.register_forward_hook: hook must be callable, got {hook!r}")
        hooks = self.__dict__.setdefault("_forward_hooks", {})
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation; subclasses define it with Tensor ops."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # -- walking
    def _named_members(self) -> Iterator[tuple[str, Any]]:
        """Direct children: (local name, Module or Parameter), from attributes, lists and dicts."""
        for key, value in self.__dict__.items():
            if key.startswith("_"):
                continue
            if isinstance(value, (Module, Parameter)):
                yield key, value
            elif isinstance(value, (list, tuple)):
                for i, v in enumerate(value):
                    if isinstance(v, (Module, Parameter)):
                        yield f"{key}.{i}", v
            elif isinstance(value, dict):
                for k, v in value.items():
                    if isinstance(v, (Module, Parameter)):
                        yield f"{key}.{k}", v

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every sub-module, with dotted names ("" for this one), each once."""
        seen: set[int] = set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            name, mod = stack.pop()
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            yield name, mod
            children = [(f"{name}.{k}" if name else k, v) for k, v in mod._named_members() if isinstance(v, Module)]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        """This module and every sub-module."""
        return (m for _, m in self.named_modules())

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct sub-modules with their local names, each once."""
        seen: set[int] = set()
        for k, v in self._named_members():
            if isinstance(v, Module) and id(v) not in seen:
                seen.add(id(v))
                yield k, v

    def children(self) -> Iterator[Module]:
        """Direct sub-modules, each once."""
        return (m for _, m in self.named_children())

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every sub-module (children first, depth first) and then on this module; returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """Every parameter once, with its dotted name; a parameter takes the longest such name as its label."""
        seen: set[int] = set()
        for mname, mod in self.named_modules():
            for k, v in mod._named_members():
                if isinstance(v, Parameter) and id(v) not in seen:
                    seen.add(id(v))
                    full = f"{mname}.{k}" if mname else k
                    # Names only ever get more qualified ("weight" -> "lstm.weight"): walking a sub-module
                    # later must not undo the root's labels, and a name the user chose is kept.
                    if v.name is None or (len(full) > len(v.name) and full.endswith("." + v.name)):
                        v.name = full
                    yield full, v

    def parameters(self) -> list[Parameter]:
        """Every parameter once, in a stable order."""
        return [p for _, p in self.named_parameters()]

    # -- buffers: arrays that are state but not parameters (BatchNorm's running statistics)
    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Keep ``value`` as attribute ``name`` and include it in ``state_dict``."""
        buffers = self.__dict__.setdefault("_buffers", [])
        if name not in buffers:
            buffers.append(name)
        object.__setattr__(self, name, np.asarray(value))

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        """Every buffer with its dotted name."""
        for mname, mod in self.named_modules():
            for k in mod.__dict__.get("_buffers", ()):
                yield (f"{mname}.{k}" if mname else k), getattr(mod, k)

    # -- training state
    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Turn gradients of every parameter on (or off, to freeze the module); returns self."""
        for p in self.parameters():
            if requires_grad and p.dtype.kind != "f":
                raise TypeError(f"requires_grad_: parameter {p.name} has dtype {p.dtype}; only floats can require grad")
            p.requires_grad = bool(requires_grad)
        return self

    def _cast(self, dtype: np.dtype) -> Module:
        """Cast every floating parameter (and its gradient) and buffer to ``dtype`` in place; returns self.

        The Parameter objects stay the same (an optimizer holding them keeps working); their version is bumped
        because their data changed.
        """
        for p in self.parameters():
            if p.dtype.kind == "f" and p.dtype != dtype:
                p.data = p.data.astype(dtype)
                p._version += 1
                if p.grad is not None:
                    p.grad = p.grad.astype(dtype)
        for mod in self.modules():
            for k in mod.__dict__.get("_buffers", ()):
                buf = getattr(mod, k)
                if buf is not None and np.asarray(buf).dtype.kind == "f":
                    object.__setattr__(mod, k, np.asarray(buf).astype(dtype))
        return self

    def double(self) -> Module:
        """Cast floating parameters and buffers to float64 in place; returns self (as PyTorch)."""
        return self._cast(np.dtype(np.float64))

    def float(self) -> Module:
        """Cast floating parameters and buffers to float32 in place; returns self (as PyTorch)."""
        return self._cast(np.dtype(np.float32))

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (set it to None)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active, batch-norm statistics updated) here and below."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Set evaluation mode here and below."""
        return self.train(False)

    # -- state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by dotted name, as copies, in PyTorch's order and layouts.

        PyTorch's order: depth-first over modules, each module's own parameters, then its own buffers.
        """
        params = {id(p): k for k, p in self.named_parameters()}  # also gives every parameter its dotted name
        out: dict[str, np.ndarray] = {}
        for mname, mod in self.named_modules():
            for _, v in mod._named_members():
                name = params.get(id(v))
                if name is not None and name not in out:  # a shared parameter appears once
                    out[name] = v.data.copy()
            for k in mod.__dict__.get("_buffers", ()):
                out[f"{mname}.{k}" if mname else k] = np.array(getattr(mod, k), copy=True)
        return out

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> _IncompatibleKeys:
        """Copy arrays (or anything ``np.asarray`` takes, e.g. torch tensors) into parameters and buffers.

        Returns ``_IncompatibleKeys(missing_keys, unexpected_keys)`` as PyTorch. Everything is checked before
        anything is written: missing or unexpected keys (with ``strict``) and shape mismatches (always) raise
        one ValueError listing them all, and leave the module unchanged. With ``strict=False`` the matching keys
        are loaded and the others reported. Parameters are written in place (same objects, version bumped).
        """
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict({type(self).__name__}): state must be a dict, got {type(state).__name__}")
        params = dict(self.named_parameters())
        owners = {
            name: (mod, k)
            for mname, mod in self.named_modules()
            for k in mod.__dict__.get("_buffers", ())
            for name in [f"{mname}.{k}" if mname else k]
        }
        mine = set(params) | set(owners)
        problems = []
        # In the module's order (state_dict's) and the state's order, as PyTorch lists them.
        missing = [k for k in self._state_keys() if k not in state]
        unexpected = [k for k in state if k not in mine]
        if strict:
            if missing:
                problems.append(f"missing keys: {missing}")
            if unexpected:
                problems.append(f"unexpected keys: {unexpected}")
        new = {}
        for k, v in state.items():
            if k not in mine:
                continue
            try:
                arr = np.asarray(v.data if isinstance(v, Tensor) else v)
            except Exception as e:
                problems.append(f"{k}: cannot convert {type(v).__name__} to an array ({e})")
                continue
            target = params[k].data if k in params else np.asarray(getattr(*owners[k]))
            if arr.shape != target.shape:
                problems.append(f"{k}: shape {arr.shape} in the state dict, {target.shape} in the model")
            elif arr.dtype.kind not in "fiub":
                problems.append(f"{k}: dtype {arr.dtype} is not numeric")
            else:
                new[k] = arr.astype(target.dtype, copy=True)
        if problems:
            raise ValueError(f"load_state_dict({type(self).__name__}): " + "; ".join(problems))
        with no_grad():
            for k, arr in new.items():
                if k in params:
                    params[k].copy_(arr)  # in place: optimizers holding the Parameter see the new values
                else:
                    mod, attr = owners[k]
                    object.__setattr__(mod, attr, arr)
        return _IncompatibleKeys(missing, unexpected)

    def _state_keys(self) -> list[str]:
        """The keys of ``state_dict()`` in its order, without copying any array."""
        params = {id(p): k for k, p in self.named_parameters()}
        keys: dict[str, None] = {}
        for mname, mod in self.named_modules():
            for _, v in mod._named_members():
                if id(v) in params:
                    keys[params[id(v)]] = None
            for k in mod.__dict__.get("_buffers", ()):
                keys[f"{mname}.{k}" if mname else k] = None
        return list(keys)

    def extra_repr(self) -> str:
        """Arguments shown in ``repr``."""
        return ""

    def __repr__(self) -> str:
        kids = [f"  ({k}): " + repr(v).replace("\n", "\n  ") for k, v in self._named_members() if isinstance(v, Module)]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n" + "\n".join(kids) + "\n)" if kids else ")")
