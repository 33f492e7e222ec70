"""Independent numpy implementations of the layers, losses and optimizers
layerlens describes: the tutorial's method ("write it yourself, then compare
with the framework") as code. No torch inside: each function is teaching code
with its formula in the docstring, and `layerlens.verify` compares PyTorch's
outputs with them.

Each layer's reference lives in its family's module (`layerlens.layers.conv`
has `conv1d` beside the Conv1d checks); this module gathers them in one
namespace, with the optimizers and gradient helpers that belong to no layer.
"""

from ..layers.activation import relu, sigmoid, softmax, tanh
from ..layers.attention import multi_head_attention
from ..layers.conv import conv1d, conv2d
from ..layers.dropout import dropout
from ..layers.embedding import embedding
from ..layers.linear import linear
from ..layers.loss import cross_entropy, mse_loss
from ..layers.norm import batch_norm, group_norm, instance_norm, layer_norm
from ..layers.pool import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    avg_pool1d,
    avg_pool2d,
    max_pool1d,
    max_pool2d,
)
from ..layers.recurrent import gru, lstm, rnn
from .grad import numerical_gradient, tutorial_gradient
from .optim import SGD, Adam, AdamW, ResettingAdam

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "ResettingAdam",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "batch_norm",
    "conv1d",
    "conv2d",
    "cross_entropy",
    "dropout",
    "embedding",
    "group_norm",
    "gru",
    "instance_norm",
    "layer_norm",
    "linear",
    "lstm",
    "max_pool1d",
    "max_pool2d",
    "mse_loss",
    "multi_head_attention",
    "numerical_gradient",
    "relu",
    "rnn",
    "sigmoid",
    "softmax",
    "tanh",
    "tutorial_gradient",
]
