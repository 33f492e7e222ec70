"""Independent numpy implementations of the layers, losses and optimizers
layerlens describes — the tutorial's method ("write it yourself, then compare
with the framework") as code. No torch inside: each function is teaching code
with its formula in the docstring, and `layerlens.verify` compares PyTorch's
outputs with them.
"""

from .activations import relu, sigmoid, softmax, tanh
from .attention import multi_head_attention
from .conv import conv1d, conv2d
from .grad import numerical_gradient, tutorial_gradient
from .linear import embedding, linear
from .losses import cross_entropy, mse_loss
from .norm import batch_norm, group_norm, instance_norm, layer_norm
from .optim import SGD, Adam, AdamW, ResettingAdam
from .pooling import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    avg_pool1d,
    avg_pool2d,
    max_pool1d,
    max_pool2d,
)
from .recurrent import gru, lstm, rnn
from .regularization import dropout

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
