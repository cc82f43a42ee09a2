"""Floor 2: layers. Module, Parameter, containers and every layer the zoo needs, PyTorch's names and shapes."""
from . import functional, init
from .activation import ELU, GELU, Hardtanh, LeakyReLU, LogSoftmax, ReLU, ReLU6, SiLU, Sigmoid, Softmax, Tanh
from .attention import MultiheadAttention
from .containers import ModuleList, Sequential
from .conv import Conv2d
from .dropout import Dropout
from .linear import Linear
from .loss import CrossEntropyLoss, KLDivLoss, MSELoss, NLLLoss
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from .parameter import Parameter
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .reshape import Flatten, Identity, Unflatten
from .sparse import Embedding

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "Linear", "functional", "init",
           "Conv2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
           "ReLU", "ReLU6", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "ELU", "Hardtanh", "Softmax", "LogSoftmax",
           "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "Unflatten", "Identity", "Dropout", "Embedding",
           "CrossEntropyLoss", "NLLLoss", "MSELoss", "KLDivLoss"]

from .transformer import TransformerEncoder, TransformerEncoderLayer  # noqa: E402  (written by the lead)
__all__ += ["MultiheadAttention", "TransformerEncoderLayer", "TransformerEncoder"]
