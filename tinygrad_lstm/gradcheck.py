"""Check analytic gradients (the engine's VJPs) against central finite differences in float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import engine
from .tensor import Tensor, default_dtype, get_tangent, no_grad, set_tangent


class GradcheckError(AssertionError):
    """An analytic gradient differs from its finite-difference estimate."""


def _outputs(out: Any) -> list[Tensor]:
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if not outs or not all(isinstance(o, Tensor) for o in outs):
        raise TypeError(f"gradcheck: fn must return a Tensor or a tuple of Tensors, got {type(out).__name__}")
    return outs


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any] | Tensor,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
    *,
    check_forward_ad: bool = False,
    check_backward_ad: bool = True,
) -> bool:
    """Compare d(v . fn(*inputs))/d(input) from backward() with central differences, in float64.

    ``v`` is a fixed random cotangent per output, so every entry of the Jacobian takes part. The inputs
    checked are the float Tensors with ``requires_grad=True`` (all float inputs if none is marked); other
    inputs pass through unchanged. Returns True, or raises GradcheckError naming the input, the worst index
    and both values.

    ``check_forward_ad=True`` also checks forward mode (the ops' JVPs, as PyTorch's flag of that name): for
    each checked input, the tangent of every output for a random direction u of that input against the
    central difference (fn(x + eps u) - fn(x - eps u)) / (2 eps). ``check_backward_ad=False`` skips the VJP check.
    """
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    marked = [isinstance(x, Tensor) and x.requires_grad for x in inputs]
    if not any(marked):
        marked = [
            isinstance(x, (Tensor, np.ndarray)) and np.asarray(getattr(x, "data", x)).dtype.kind == "f" for x in inputs
        ]
    if not any(marked):
        raise ValueError("gradcheck: no float input to check")
    args = [
        Tensor(np.array(getattr(x, "data", x), dtype=np.float64), requires_grad=True, name=getattr(x, "name", None))
        if m
        else x
        for x, m in zip(inputs, marked)
    ]
    rng = np.random.default_rng(seed)
    if check_forward_ad:
        _check_forward(fn, args, marked, eps, atol, rtol, np.random.default_rng(seed + 1))
    if not check_backward_ad:
        return True
    with default_dtype(np.float64):
        outs = _outputs(fn(*args))
        vs = [rng.standard_normal(o.shape) for o in outs]

        def value() -> float:
            with no_grad():
                return float(sum(np.sum(o.data * v) for o, v in zip(_outputs(fn(*args)), vs)))

        live = [(o, v) for o, v in zip(outs, vs) if o.requires_grad]
        if live:
            total = live[0][0].__mul__(live[0][1]).sum()
            for o, v in live[1:]:
                total = total + (o * v).sum()
            total.backward()
        for pos, (x, m) in enumerate(zip(args, marked)):
            if not m:
                continue
            analytic = x.grad if x.grad is not None else np.zeros(x.shape)
            numeric = np.zeros(x.shape)
            flat = x.data.reshape(-1)  # a view: perturbing it perturbs the input
            for i in range(flat.size):
                orig = flat[i]
                flat[i] = orig + eps
                up = value()
                flat[i] = orig - eps
                down = value()
                flat[i] = orig
                numeric.reshape(-1)[i] = (up - down) / (2 * eps)
            with np.errstate(invalid="ignore"):
                excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
            # NaN or Inf on either side is a failure too (nanmax would skip a NaN).
            excess = np.where(np.isfinite(excess), excess, np.inf)
            if excess.size and excess.max() > 0:
                worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), x.shape))
                label = f"input {pos}" + (f" ({x.name})" if x.name else "") + f" of shape {x.shape}"
                raise GradcheckError(
                    f"gradcheck: {label}: analytic and numeric gradients differ; worst at index {worst}: "
                    f"analytic {float(analytic[worst])!r}, numeric {float(numeric[worst])!r} "
                    f"(atol={atol}, rtol={rtol})"
                )
    return True


def _check_forward(
    fn: Callable[..., Any], args: list, marked: list, eps: float, atol: float, rtol: float, rng: np.random.Generator
) -> None:
    """Forward mode: J u from the JVPs against the central difference along u, one checked input at a time."""
    with default_dtype(np.float64):
        for pos, (x, m) in enumerate(zip(args, marked)):
            if not m:
                continue
            u = rng.standard_normal(x.shape)
            with engine.DualLevel(1):
                set_tangent(x, u[None])
                outs = _outputs(fn(*args))
                analytic = [get_tangent(o) for o in outs]
                set_tangent(x, None)
            orig = x.data.copy()
            with no_grad():
                x.data[...] = orig + eps * u
                up = [o.data.astype(np.float64) for o in _outputs(fn(*args))]
                x.data[...] = orig - eps * u
                down = [o.data.astype(np.float64) for o in _outputs(fn(*args))]
                x.data[...] = orig
            for j, (o, a, hi, lo) in enumerate(zip(outs, analytic, up, down)):
                numeric = (hi - lo) / (2 * eps)
                got = np.zeros(o.shape) if a is None else a[0]
                with np.errstate(invalid="ignore"):
                    excess = np.abs(got - numeric) - (atol + rtol * np.abs(numeric))
                excess = np.where(np.isfinite(excess), excess, np.inf)
                if excess.size and excess.max() > 0:
                    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), o.shape))
                    label = f"input {pos}" + (f" ({x.name})" if x.name else "") + f" of shape {x.shape}"
                    raise GradcheckError(
                        f"gradcheck (forward mode): output {j} of shape {o.shape}, tangent along {label}: JVP and "
                        f"numeric directional derivative differ; worst at index {worst}: JVP "
                        f"{float(got[worst])!r}, numeric {float(numeric[worst])!r} (atol={atol}, rtol={rtol})"
                    )
