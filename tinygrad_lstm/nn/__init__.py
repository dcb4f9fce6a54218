"""Neural-network layers built only from Tensor ops (PyTorch's names, shapes and defaults)."""

from . import functional, init, utils
from .layers import (
    BatchNorm1d,
    Dropout,
    Embedding,
    Flatten,
    Hardsigmoid,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    LogSoftmax,
    ModuleDict,
    ModuleList,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from .module import Module, Parameter
from .rnn import GRU, LSTM, RNN, STEP_OBSERVERS, GRUCell, LSTMCell, RNNCell, StepRecord

__all__ = ["Module", "Parameter"]
__all__ += [
    "BatchNorm1d",
    "Dropout",
    "Embedding",
    "Flatten",
    "Hardsigmoid",
    "Identity",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "ModuleDict",
    "ModuleList",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "functional",
    "init",
    "utils",
]
__all__ += ["GRU", "LSTM", "RNN", "STEP_OBSERVERS", "GRUCell", "LSTMCell", "RNNCell", "StepRecord"]
