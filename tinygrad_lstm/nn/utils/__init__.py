"""Utilities for layers, as ``torch.nn.utils``: ``rnn`` holds the variable-length sequence tools."""

from . import rnn

__all__ = ["rnn"]
