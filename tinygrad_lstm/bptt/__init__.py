"""The BPTT study toolkit: record what flows back through time, measure Jacobians, train with truncation.

Everything here is built on the engine's own graph and VJPs; nothing differentiates by hand.

* ``record()`` observes every RNN/LSTM/GRU step (``nn.rnn.STEP_OBSERVERS``) and returns a ``Recording``: states,
  the gradients that reached them (``dL/dh_t``), gate activations, saturation, forget-gate products, the first
  non-finite gradient, an ``.npz`` dump and a plot.
* ``jacobian_norms`` / ``step_jacobian_norms`` measure the spectral norms of ``dh_T/dh_t`` and ``dh_t/dh_{t-1}``
  exactly, one backward pass per hidden unit.
* ``rtrl``, ``snap`` (SnAp-1) and ``uoro`` compute the gradient forward in time with forward-mode JVPs, no graph
  across steps; ``compare_gradient_methods`` measures them (and truncated BPTT) against BPTT's exact gradient.
* ``tbptt`` trains (or just accumulates gradients) with truncated backpropagation through time.
* ``compare_cells`` is the ``python -m tinygrad_lstm bptt`` command: gradient norm through time per cell type.

Time indices: in a ``Recording``, ``t`` is the 0-based step, and ``h_t`` is the state the step at ``t`` produced
(the layer's output at ``t``), as in PyTorch's output tensor. The Jacobian functions number states the
textbook way instead, see their docstrings.
"""

from .forward import compare_gradient_methods, rtrl, snap, uoro
from .jacobians import jacobian_norms, step_jacobian_norms
from .recording import CELL_KINDS, GATE_NAMES, NotRecordedError, Recording, record
from .study import add_cli_arguments, compare_cells, format_table, measure_gradient_flow, plot_gradient_flow, run_cli
from .truncated import tbptt

__all__ = [
    "CELL_KINDS",
    "GATE_NAMES",
    "NotRecordedError",
    "Recording",
    "add_cli_arguments",
    "compare_cells",
    "compare_gradient_methods",
    "format_table",
    "jacobian_norms",
    "measure_gradient_flow",
    "plot_gradient_flow",
    "record",
    "rtrl",
    "run_cli",
    "snap",
    "step_jacobian_norms",
    "tbptt",
    "uoro",
]
