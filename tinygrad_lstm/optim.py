"""Optimizers, gradient clipping and learning-rate schedulers, matching PyTorch's update rules step for step.

Updates happen in place on ``p.data`` with numpy, outside the graph (an optimizer step is not something to
differentiate). Hyper-parameters are Python floats, so a float32 parameter stays float32: numpy keeps the
array's dtype when it meets a Python scalar, and every state buffer is made in the parameter's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .tensor import Tensor, enable_grad

# ------------------------------------------------------------------------------------------------ base


class Optimizer:
    """Holds parameter groups (dicts with "params" and hyper-parameters) and per-parameter state."""

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}  # keyed by id(param); params are kept alive by the groups
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Tensors or dicts, got one Tensor")
        if hasattr(params, "parameters") and callable(params.parameters):
            raise TypeError(f"{type(self).__name__}: pass model.parameters(), not the model")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group; hyper-parameters it does not set take the optimizer's defaults."""
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}: a param group must be a dict with a 'params' entry, got {type(group).__name__}")
        ps = group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        for i, p in enumerate(ps):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: params[{i}] is a {type(p).__name__}, not a Tensor")
            if not p.is_leaf:
                raise ValueError(f"{name}: can only optimize leaf tensors (params[{i}] was computed by an op)")
            if p.dtype.kind != "f":
                raise TypeError(f"{name}: params[{i}] has dtype {p.dtype}; only floating tensors can be optimized")
        ids = [id(p) for p in ps]
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len(set(ids)) != len(ids) or seen & set(ids):
            raise ValueError(f"{name}: some parameters appear more than once (in this or another group)")
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(f"{name}: unknown option(s) {sorted(unknown)} in a param group")
        new = {**self.defaults, **group, "params": ps}
        self._validate(new)
        self.param_groups.append(new)

    def _validate(self, group: dict[str, Any]) -> None:
        """Check one group's hyper-parameters (subclasses extend)."""
        name = type(self).__name__
        for k, v in group.items():  # numpy scalars would upcast float32 params: keep Python numbers
            if isinstance(v, np.generic):
                group[k] = v.item()
            elif isinstance(v, (tuple, list)) and k != "params":
                group[k] = tuple(x.item() if isinstance(x, np.generic) else x for x in v)
        for key in ("lr", "eps", "weight_decay", "momentum", "lr_decay", "initial_accumulator_value"):
            if key in group and not group[key] >= 0:
                raise ValueError(f"{name}: invalid {key} {group[key]!r} (must be >= 0)")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (or fill it with zeros)."""
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad = np.zeros_like(p.grad)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; ``closure`` re-evaluates the loss first."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = np.asarray(p.grad)
                if g.shape != p.data.shape:
                    raise ValueError(f"{type(self).__name__}: grad shape {g.shape} != param shape {p.data.shape}")
                self._update(p, g.astype(p.data.dtype, copy=False), group, self.state.setdefault(id(p), {}))
                p._version += 1  # the step wrote p's data in place: a graph that saved it can no longer backward
        return loss

    def _update(self, p: Tensor, grad: np.ndarray, group: dict[str, Any], state: dict[str, Any]) -> None:
        raise NotImplementedError  # pragma: no cover

    # -- state
    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self) -> dict[str, Any]:
        """{"state": {index: {name: array or number}}, "param_groups": [{options..., "params": [index, ...]}]}.

        Parameters are numbered in group order, as PyTorch; arrays are copies.
        """
        index = {id(p): i for i, p in enumerate(self._params())}
        state = {
            index[k]: {n: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for n, v in s.items()}
            for k, s in self.state.items()
            if k in index and s
        }
        groups = []
        for g in self.param_groups:
            d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"}
            d["params"] = [index[id(p)] for p in g["params"]]
            groups.append(d)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore options and per-parameter state; everything is checked before anything changes."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{name}: expected a dict with keys 'state' and 'param_groups'")
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}: {len(groups)} param groups in the state dict, {len(self.param_groups)} here")
        for i, (sg, g) in enumerate(zip(groups, self.param_groups)):
            if len(sg["params"]) != len(g["params"]):
                raise ValueError(
                    f"{name}: group {i} has {len(sg['params'])} params in the state dict, {len(g['params'])} here"
                )
        params = self._params()
        index_of = {}
        for sg, g in zip(groups, self.param_groups):
            for saved, p in zip(sg["params"], g["params"]):
                index_of[int(saved)] = p
        new_state: dict[int, dict[str, Any]] = {}
        for k, s in state_dict["state"].items():
            p = index_of.get(int(k))
            if p is None:
                raise ValueError(f"{name}: state for parameter {k}, which no group lists (of {len(params)})")
            entry = {}
            for n, v in s.items():
                if isinstance(v, (np.ndarray, np.generic)) and np.ndim(v) > 0:
                    arr = np.asarray(v)
                    if arr.shape != p.data.shape:
                        raise ValueError(f"{name}: state {n!r} of parameter {k} has shape {arr.shape}, param {p.shape}")
                    entry[n] = arr.astype(p.data.dtype, copy=True)
                elif isinstance(v, (np.ndarray, np.generic)):
                    entry[n] = v.item()
                else:
                    entry[n] = v
            new_state[id(p)] = entry
        new_groups = []
        for sg, g in zip(groups, self.param_groups):
            ng = dict(g)
            for k, v in sg.items():
                if k != "params":
                    ng[k] = tuple(v) if isinstance(self.defaults.get(k), tuple) else v
            self._validate(ng)
            new_groups.append(ng)
        for g, ng in zip(self.param_groups, new_groups):
            g.update(ng)  # in place: schedulers hold these very dicts
        self.state = new_state

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({opts})"


def _wd(grad: np.ndarray, p: np.ndarray, wd: float) -> np.ndarray:
    """L2 penalty folded into the gradient (PyTorch's coupled weight decay)."""
    return grad + wd * p if wd != 0 else grad


# ------------------------------------------------------------------------------------------------ optimizers


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (heavy-ball or Nesterov), dampening, weight decay."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum > 0 and zero dampening")
        super().__init__(
            params,
            {
                "lr": lr,
                "momentum": momentum,
                "dampening": dampening,
                "nesterov": nesterov,
                "weight_decay": weight_decay,
            },
        )

    def _update(self, p: Tensor, grad: np.ndarray, group: dict[str, Any], state: dict[str, Any]) -> None:
        d = _wd(grad, p.data, group["weight_decay"])
        mom = group["momentum"]
        if mom != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = d.copy()
                state["momentum_buffer"] = buf
            else:
                buf *= mom
                buf += (1 - group["dampening"]) * d
            d = d + mom * buf if group["nesterov"] else buf
        p.data -= group["lr"] * d


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction, optional L2 weight decay and AMSGrad, as PyTorch."""

    decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(
            params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad}
        )

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        b1, b2 = group["betas"]
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {group['betas']}")

    def _update(self, p: Tensor, grad: np.ndarray, group: dict[str, Any], state: dict[str, Any]) -> None:
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        if self.decoupled:
            p.data *= 1 - lr * wd
        else:
            grad = _wd(grad, p.data, wd)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1 - b1) * (grad - m)  # lerp towards the gradient
        v *= b2
        v += (1 - b2) * grad * grad
        step_size = lr / (1 - b1**t)
        bc2_sqrt = math.sqrt(1 - b2**t)
        if group["amsgrad"]:
            vmax = state.setdefault("max_exp_avg_sq", np.zeros_like(p.data))
            np.maximum(vmax, v, out=vmax)
            denom = np.sqrt(vmax) / bc2_sqrt + eps
        else:
            denom = np.sqrt(v) / bc2_sqrt + eps
        p.data -= step_size * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay: p <- p * (1 - lr * weight_decay) before the Adam step."""

    decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


class RMSprop(Optimizer):
    """RMSprop with optional momentum and centering (variance instead of second moment), as PyTorch."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(
            params,
            {
                "lr": lr,
                "alpha": alpha,
                "eps": eps,
                "weight_decay": weight_decay,
                "momentum": momentum,
                "centered": centered,
            },
        )

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        if not 0 <= group["alpha"]:
            raise ValueError(f"RMSprop: invalid alpha {group['alpha']!r} (must be >= 0)")

    def _update(self, p: Tensor, grad: np.ndarray, group: dict[str, Any], state: dict[str, Any]) -> None:
        lr, alpha, eps, mom = group["lr"], group["alpha"], group["eps"], group["momentum"]
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(p.data)
            if mom > 0:
                state["momentum_buffer"] = np.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(p.data)
        state["step"] += 1
        grad = _wd(grad, p.data, group["weight_decay"])
        sq = state["square_avg"]
        sq *= alpha
        sq += (1 - alpha) * grad * grad
        if group["centered"]:
            ga = state.setdefault("grad_avg", np.zeros_like(p.data))
            ga += (1 - alpha) * (grad - ga)
            avg = np.sqrt(sq - ga * ga)
        else:
            avg = np.sqrt(sq)
        avg += eps
        if mom > 0:
            buf = state.setdefault("momentum_buffer", np.zeros_like(p.data))
            buf *= mom
            buf += grad / avg
            p.data -= lr * buf
        else:
            p.data -= lr * (grad / avg)


class Adagrad(Optimizer):
    """Adagrad: per-coordinate steps lr / (1 + (t-1) lr_decay) / (sqrt(sum of squared grads) + eps)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        super().__init__(
            params,
            {
                "lr": lr,
                "lr_decay": lr_decay,
                "weight_decay": weight_decay,
                "initial_accumulator_value": initial_accumulator_value,
                "eps": eps,
            },
        )
        # PyTorch creates the accumulators up front (so they appear in state_dict before the first step).
        for g in self.param_groups:
            for p in g["params"]:
                self.state[id(p)] = {
                    "step": 0,
                    "sum": np.full_like(p.data, g["initial_accumulator_value"]),
                }

    def _update(self, p: Tensor, grad: np.ndarray, group: dict[str, Any], state: dict[str, Any]) -> None:
        if "sum" not in state:  # a group added after construction
            state.update(step=0, sum=np.full_like(p.data, group["initial_accumulator_value"]))
        state["step"] += 1
        grad = _wd(grad, p.data, group["weight_decay"])
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        s = state["sum"]
        s += grad * grad
        p.data -= clr * (grad / (np.sqrt(s) + group["eps"]))


# ------------------------------------------------------------------------------------------------ clipping


def _grad_params(params: Any) -> list[Tensor]:
    if isinstance(params, Tensor):
        params = [params]
    elif hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    return [p for p in params if isinstance(p, Tensor) and p.grad is not None]


def clip_grad_norm_(params: Any, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients together so their joint ``norm_type``-norm is at most ``max_norm``.

    Returns the total norm before clipping (``inf`` norm = largest absolute entry). As PyTorch, the scale
    is max_norm / (total + 1e-6), capped at 1.
    """
    norm_type = float(norm_type)
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    ps = _grad_params(params)
    if not ps:
        return np.float64(0.0)
    if math.isinf(norm_type):
        total = max(float(np.max(np.abs(p.grad))) if p.grad.size else 0.0 for p in ps)
    else:
        if norm_type <= 0:
            raise ValueError(f"clip_grad_norm_: norm_type must be positive or inf, got {norm_type}")
        per = np.array([np.linalg.norm(p.grad.reshape(-1).astype(np.float64), ord=norm_type) for p in ps])
        total = float(np.linalg.norm(per, ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total}; "
            "pass error_if_nonfinite=False to clip anyway"
        )
    coef = min(max_norm / (total + 1e-6), 1.0)
    for p in ps:
        if p.grad.flags.writeable:
            p.grad *= p.grad.dtype.type(coef)
        else:
            p.grad = p.grad * p.grad.dtype.type(coef)
    return np.float64(total)  # a float that also has .item(), like the 0-d tensor PyTorch returns


def clip_grad_value_(params: Any, clip_value: float) -> None:
    """Clamp every gradient entry into [-clip_value, clip_value] in place."""
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for p in _grad_params(params):
        p.grad = np.clip(p.grad, -clip_value, clip_value).astype(p.grad.dtype, copy=False)


# ------------------------------------------------------------------------------------------------ schedulers


class LRScheduler:
    """Base of the schedulers: ``step()`` advances one epoch and writes each group's new "lr"."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: {type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for g in optimizer.param_groups:
                g.setdefault("initial_lr", g["lr"])
        elif any("initial_lr" not in g for g in optimizer.param_groups):
            raise KeyError(f"{type(self).__name__}: resuming (last_epoch={last_epoch}) needs 'initial_lr' in groups")
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def get_lr(self) -> list[float]:
        """The learning rates for ``self.last_epoch`` (recursive form, as PyTorch)."""
        raise NotImplementedError  # pragma: no cover

    def step(self) -> None:
        """Advance one epoch."""
        self._step_count += 1
        self.last_epoch += 1
        for g, lr in zip(self.optimizer.param_groups, self.get_lr()):
            g["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates the last ``step()`` set."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.__dict__.update(state_dict)


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        if not isinstance(step_size, int) or step_size <= 0:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lrs
        return [lr * self.gamma for lr in lrs]


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        if self.last_epoch == 0:
            return lrs
        return [lr * self.gamma for lr in lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the base lr to ``eta_min`` over ``T_max`` epochs (and back, periodically)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if not isinstance(T_max, int) or T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups, e, T, lo = self.optimizer.param_groups, self.last_epoch, self.T_max, self.eta_min
        if e == 0:
            return [g["lr"] for g in groups]
        if self._step_count == 1 and e > 0:  # resumed: closed form
            return [lo + (b - lo) * (1 + math.cos(e * math.pi / T)) / 2 for b in self.base_lrs]
        if (e - 1 - T) % (2 * T) == 0:
            return [g["lr"] + (b - lo) * (1 - math.cos(math.pi / T)) / 2 for b, g in zip(self.base_lrs, groups)]
        return [
            (1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (g["lr"] - lo) + lo
            for g in groups
        ]
