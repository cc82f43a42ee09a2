"""Loss layers, as torch.nn: CrossEntropyLoss, NLLLoss, MSELoss, KLDivLoss (formulas in `nn/functional/loss.py`).

CrossEntropyLoss(weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0)(logits, targets)
NLLLoss(weight=None, ignore_index=-100, reduction="mean")(log_probs, targets)
MSELoss(reduction="mean")(input, target)
KLDivLoss(reduction="mean", log_target=False)(log_q, p)     -- use reduction="batchmean" for the true KL
The class weights of CrossEntropyLoss / NLLLoss are a buffer named "weight" (in state_dict, as PyTorch).
PyTorch's deprecated size_average / reduce arguments keep their positions but must be None.
"""
import numpy as np

from . import functional as F
from .functional.loss import check_no_legacy
from .functional.utils import check_reduction, raw
from .module import Module


class CrossEntropyLoss(Module):
    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0):
        super().__init__()
        check_no_legacy("CrossEntropyLoss", size_average, reduce)
        check_reduction(reduction, "CrossEntropyLoss")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.register_buffer("weight", None if weight is None else np.asarray(raw(weight), dtype=np.float32))
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, float(label_smoothing)

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)


class NLLLoss(Module):
    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
        super().__init__()
        check_no_legacy("NLLLoss", size_average, reduce)
        check_reduction(reduction, "NLLLoss")
        self.register_buffer("weight", None if weight is None else np.asarray(raw(weight), dtype=np.float32))
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class MSELoss(Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        check_no_legacy("MSELoss", size_average, reduce)
        self.reduction = check_reduction(reduction, "MSELoss")

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class KLDivLoss(Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False):
        super().__init__()
        check_no_legacy("KLDivLoss", size_average, reduce)
        self.reduction = check_reduction(reduction, "KLDivLoss", ("none", "mean", "sum", "batchmean"))
        self.log_target = log_target

    def forward(self, input, target):
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
