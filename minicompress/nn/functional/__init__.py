"""`minicompress.nn.functional` (import as F): stateless ops on Tensors, PyTorch's names and arguments."""
from .activation import elu, gelu, hardtanh, leaky_relu, relu, relu6, sigmoid, silu, tanh
from .conv import conv2d
from .dropout import dropout
from .embedding import embedding
from .linear import linear
from .loss import cross_entropy, kl_div, mse_loss, nll_loss
from .normalization import batch_norm, layer_norm
from .pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from .softmax import log_softmax, softmax

__all__ = ["linear", "conv2d", "relu", "relu6", "leaky_relu", "gelu", "silu", "sigmoid", "tanh", "elu", "hardtanh",
           "softmax", "log_softmax", "layer_norm", "batch_norm", "dropout", "embedding",
           "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "cross_entropy", "nll_loss", "mse_loss", "kl_div"]
