"""Neural-network layers built only from Tensor ops (PyTorch's names, shapes and defaults)."""

from .module import Module, Parameter

__all__ = ["Module", "Parameter"]
