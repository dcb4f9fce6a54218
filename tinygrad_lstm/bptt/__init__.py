"""The BPTT study toolkit: record what flows back through time, measure Jacobians, train with truncation.

Everything here is built on the engine's own graph and VJPs; nothing differentiates by hand.

* ``record()`` observes every RNN/LSTM/GRU step (``nn.rnn.STEP_OBSERVERS``) and returns a ``Recording``: states,
  the gradients that reached them (``dL/dh_t``), gate activations, saturation, forget-gate products, the first
  non-finite gradient, an ``.npz`` dump and a plot.
* ``jacobian_norms`` / ``step_jacobian_norms`` measure the spectral norms of ``dh_T/dh_t`` and ``dh_t/dh_{t-1}``
  exactly, one backward pass per hidden unit; ``jacobian_norms(method="power")`` matrix-free, by a block power
  (LOBPCG) iteration on JVPs and VJPs; ``lyapunov_spectrum`` gives the Lyapunov exponents of the trajectory (QR
  method on JVPs); ``compare_lyapunov`` / ``plot_lyapunov`` compare cells and forget biases.
* ``rtrl``, ``snap`` (SnAp-1) and ``uoro`` compute the gradient forward in time with forward-mode JVPs, no graph
  across steps; ``compare_gradient_methods`` measures them (and truncated BPTT) against BPTT's exact gradient.
* ``tbptt`` trains (or just accumulates gradients) with truncated backpropagation through time.
* ``compare_cells`` is the ``python -m tinygrad_lstm bptt`` command: gradient norm through time per cell type.
* ``Recording.param_grads`` takes BPTT's sum over time apart: one gradient term per step of a shared weight.
* ``flow_matrix``: ||dL_t/dh_s|| for every pair of steps; ``truncation_bias``: what ``tbptt``'s window costs in
  gradient quality; ``checkpoint_bptt``: exact BPTT keeping only segment-boundary states (memory for compute),
  measured by ``measure_bptt_memory``. ``python -m tinygrad_lstm bptt --study ...`` runs each (``internals``).

Time indices: in a ``Recording``, ``t`` is the 0-based step, and ``h_t`` is the state the step at ``t`` produced
(the layer's output at ``t``), as in PyTorch's output tensor. The Jacobian functions number states the
textbook way instead, see their docstrings.
"""

from .checkpoint import checkpoint_bptt
from .flow import flow_matrix, plot_flow_matrix
from .forward import compare_gradient_methods, rtrl, snap, uoro
from .jacobians import jacobian_norms, step_jacobian_norms
from .lyapunov_study import compare_lyapunov, plot_lyapunov
from .memory_study import format_memory_table, measure_bptt_memory, plot_memory
from .methods_study import plot_gradient_methods
from .param_grads import plot_param_grads
from .recording import CELL_KINDS, GATE_NAMES, NotRecordedError, Recording, record
from .spectra import lyapunov_spectrum
from .study import add_cli_arguments, compare_cells, format_table, measure_gradient_flow, plot_gradient_flow, run_cli
from .truncated import tbptt
from .truncation import compare_gradients, plot_truncation_bias, truncation_bias

__all__ = [
    "CELL_KINDS",
    "GATE_NAMES",
    "NotRecordedError",
    "Recording",
    "add_cli_arguments",
    "checkpoint_bptt",
    "compare_cells",
    "compare_gradient_methods",
    "compare_gradients",
    "compare_lyapunov",
    "flow_matrix",
    "format_memory_table",
    "format_table",
    "jacobian_norms",
    "lyapunov_spectrum",
    "measure_bptt_memory",
    "measure_gradient_flow",
    "plot_flow_matrix",
    "plot_gradient_flow",
    "plot_gradient_methods",
    "plot_lyapunov",
    "plot_memory",
    "plot_param_grads",
    "plot_truncation_bias",
    "record",
    "rtrl",
    "run_cli",
    "snap",
    "step_jacobian_norms",
    "tbptt",
    "truncation_bias",
    "uoro",
]
