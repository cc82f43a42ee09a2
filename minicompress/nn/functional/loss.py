"""Losses: cross_entropy (one fused Function from logits), nll_loss, mse_loss, kl_div -- PyTorch semantics.

cross_entropy and nll_loss share one idea. Both are  L_i = -sum_c A_ic log p_ic  with constant coefficients
A (N, C) built from the targets, where log p = log_softmax(logits) (cross_entropy) or the input (nll_loss):
    class-index targets y:   A_ic = (1 - eps) w_{y_i} [c = y_i] + (eps / C) w_c      (0 for ignored rows)
    probability targets t:   A_ic = w_c ((1 - eps) t_ic + eps / C)
(w = class weights, 1 if not given; eps = label_smoothing, Szegedy et al., 2016). Reductions: "none" -> L_i;
"sum"; "mean" -> sum_i L_i / D with D = sum of w_{y_i} over non-ignored rows (index targets, as PyTorch) or
the number of rows (probability targets). Gradients:
    cross_entropy:  dL_i/dlogits_i = (sum_c A_ic) softmax(logits_i) - A_i        (one pass, no log of 0)
    nll_loss:       dL_i/dinput_i  = -A_i
Inputs: (N, C), (N, C, d1, ...) or unbatched (C,); the class axis is 1 (0 when unbatched); index targets
have the input's shape without the class axis and an integer dtype.

mse_loss(input, target):  mean or sum of (input - target)^2; both arguments get gradients 2 (x - t) g.
kl_div(input, target):    input holds log-probabilities log q, target probabilities p (or log p when
    log_target=True); pointwise p (log p - log q), 0 where p = 0. Reductions "mean" (over all elements,
    PyTorch's default), "batchmean" (sum / batch size: the true KL divergence per sample), "sum", "none".
Function names "cross_entropy", "nll_loss", "mse_loss", "kl_div".
"""
import numpy as np
from scipy.special import xlogy

from ...core import Function, Tensor
from .utils import as_tensor, check_reduction, raw


def _reduce(losses, reduction, divisor):
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return np.asarray(total, dtype=losses.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):  # every target ignored: nan, as PyTorch
        return np.asarray(total / divisor, dtype=losses.dtype)


def _row_scale(grad, reduction, divisor, n_rows):
    """d(reduced loss)/d(L_i) times the incoming gradient: a column (n_rows, 1) for "none", else a scalar."""
    if reduction == "none":
        return grad.reshape(n_rows, 1)
    return grad.reshape(()) if reduction == "sum" else grad.reshape(()) / grad.dtype.type(divisor)


def _rows(x):
    """(N, C, d...) -> (N d..., C) with the class axis last; (C,) -> (1, C); (N, C) as it is."""
    if x.ndim == 2:
        return x
    if x.ndim == 1:
        return x.reshape(1, -1)
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _unrows(g2, shape):
    """Inverse of _rows."""
    if len(shape) <= 2:
        return g2.reshape(shape)
    moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
    return np.moveaxis(g2.reshape(moved), -1, 1)


class Coefficients:
    """The matrix A of the module docstring, stored as A = dense + (one-hot part): row i has `index_weight[i]`
    at column `index[i]`. Class-index targets fill the one-hot part and label smoothing the dense part;
    probability targets only the dense part. Either part may be None; index_weight None means 1 and a number
    means the same weight for every row; a dense part of shape (1, C) is the same row for every sample."""

    __slots__ = ("index", "index_weight", "dense")

    def __init__(self, index=None, index_weight=None, dense=None):
        self.index, self.index_weight, self.dense = index, index_weight, dense

    def row_dot(self, m):
        """sum_c A_ic m_ic for every row i."""
        out = 0
        if self.index is not None:
            picked = m[np.arange(m.shape[0]), self.index]
            out = picked if self.index_weight is None else picked * self.index_weight
        if self.dense is not None:
            shared = self.dense.shape[0] == 1
            out = out + (m @ self.dense[0] if shared else (self.dense * m).sum(axis=1))
        return out

    def row_sums(self, n_rows, dtype):
        """sum_c A_ic: a column (n_rows, 1), or a number when it is the same for every row."""
        total = 0
        if self.index is not None:
            w = self.index_weight
            total = 1 if w is None else (w if np.ndim(w) == 0 else w[:, None])
        if self.dense is not None:
            dense_sum = self.dense.sum(axis=1, keepdims=True)
            total = total + (dense_sum.item() if self.dense.shape[0] == 1 else dense_sum)
        return total

    def subtract_from(self, g2):
        """g2 -= A, in place."""
        if self.index is not None:
            g2[np.arange(g2.shape[0]), self.index] -= 1 if self.index_weight is None else self.index_weight
        if self.dense is not None:
            g2 -= self.dense
        return g2


class CrossEntropyFn(Function):
    name = "cross_entropy"

    @staticmethod
    def forward(ctx, logits, *, coeffs, reduction, divisor, out_shape):
        z = _rows(logits)
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        losses = -coeffs.row_dot(log_p)
        ctx.save_for_backward(log_p)
        ctx.args = (logits.shape, reduction, divisor, coeffs)
        return _reduce(losses.reshape(out_shape), reduction, divisor)

    @staticmethod
    def backward(ctx, grad):
        (log_p,) = ctx.saved
        shape, reduction, divisor, coeffs = ctx.args
        n_rows = log_p.shape[0]
        p = np.exp(log_p)
        row_sums = coeffs.row_sums(n_rows, log_p.dtype)
        g2 = coeffs.subtract_from(p if isinstance(row_sums, (int, float)) and row_sums == 1 else p * row_sums)
        g2 *= _row_scale(grad, reduction, divisor, n_rows)
        return (_unrows(g2, shape),)


class NLLLossFn(Function):
    name = "nll_loss"

    @staticmethod
    def forward(ctx, log_p, *, coeffs, reduction, divisor, out_shape):
        losses = -coeffs.row_dot(_rows(log_p))
        ctx.args = (log_p.shape, log_p.dtype, reduction, divisor, coeffs)
        return _reduce(losses.reshape(out_shape), reduction, divisor)

    @staticmethod
    def backward(ctx, grad):
        shape, dtype, reduction, divisor, coeffs = ctx.args
        n_rows = int(np.prod(shape)) // shape[0 if len(shape) == 1 else 1]
        g2 = coeffs.subtract_from(np.zeros((n_rows, shape[0 if len(shape) == 1 else 1]), dtype=dtype))
        g2 *= _row_scale(grad, reduction, divisor, n_rows)
        return (_unrows(g2, shape),)


def _coefficients(x, target, weight, ignore_index, label_smoothing, op):
    """The coefficients A (see docstring), the divisor of "mean" and the shape of the unreduced loss."""
    if x.ndim < 1:
        raise ValueError(f"{op}: input must have a class axis, got a scalar")
    class_axis = 0 if x.ndim == 1 else 1
    n_classes = x.shape[class_axis]
    dtype = x.dtype
    w = None
    if weight is not None:
        w = np.asarray(raw(weight), dtype=dtype)
        if w.shape != (n_classes,):
            raise ValueError(f"{op}: weight has shape {w.shape}, expected ({n_classes},) (one per class)")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    t = raw(target)
    t = t if isinstance(t, np.ndarray) else np.asarray(t)
    index_shape = x.shape[:class_axis] + x.shape[class_axis + 1:]
    eps = float(label_smoothing)

    if t.dtype.kind == "f" and t.shape == x.shape:  # class probabilities
        probs = _rows(t.astype(dtype, copy=False))
        dense = probs * (1 - eps) + eps / n_classes if eps else probs
        return Coefficients(dense=dense if w is None else dense * w), max(probs.shape[0], 1), index_shape

    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: targets must be integer class indices of shape {index_shape} (or class "
                        f"probabilities of the input's shape {tuple(x.shape)}), got dtype {t.dtype} and shape "
                        f"{t.shape}")
    if t.shape != index_shape:
        raise ValueError(f"{op}: targets have shape {t.shape}, expected {index_shape} for input of shape "
                         f"{tuple(x.shape)} (class axis {class_axis})")
    flat = t.reshape(-1)
    if flat.size == 0:
        raise ValueError(f"{op}: got an empty batch (targets of shape {t.shape})")
    lo, hi = flat.min(), flat.max()
    valid = (flat != ignore_index) if lo <= ignore_index <= hi else None  # None: no row is ignored
    if lo < 0 or hi >= n_classes:
        bad = (flat < 0) | (flat >= n_classes)
        if valid is not None:
            bad &= valid
        if bad.any():
            raise ValueError(f"{op}: target {int(flat[bad][0])} is out of range for {n_classes} classes "
                             f"(valid: 0 .. {n_classes - 1}, or ignore_index={ignore_index})")
    index = flat if valid is None else np.where(valid, flat, 0)
    if w is None:
        index_weight = None if valid is None else valid.astype(dtype)
        divisor = float(flat.size) if valid is None else float(valid.sum())
    else:
        index_weight = w[index] if valid is None else np.where(valid, w[index], 0).astype(dtype)
        divisor = float(index_weight.sum(dtype=np.float64))
    dense = None
    if eps:
        smooth = np.full(n_classes, eps / n_classes, dtype=dtype) if w is None else (eps / n_classes) * w
        dense = smooth.reshape(1, -1) if valid is None else valid[:, None] * smooth
        index_weight = 1 - eps if index_weight is None else (1 - eps) * index_weight
    return Coefficients(index, index_weight, dense), divisor, index_shape


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0):
    """Cross-entropy from raw logits (log_softmax + nll in one stable Function). `target`: integer class
    indices, or class probabilities with the input's shape. PyTorch's arguments, order and defaults."""
    check_no_legacy("cross_entropy", size_average, reduce)
    x = as_tensor(input)
    check_reduction(reduction, "cross_entropy")
    coeffs, divisor, out_shape = _coefficients(x, target, weight, ignore_index, label_smoothing, "cross_entropy")
    return CrossEntropyFn.apply(x, coeffs=coeffs, reduction=reduction, divisor=divisor, out_shape=out_shape)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of integer class targets; `input` holds log-probabilities (e.g. log_softmax)."""
    check_no_legacy("nll_loss", size_average, reduce)
    x = as_tensor(input)
    check_reduction(reduction, "nll_loss")
    t = np.asarray(raw(target))
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"nll_loss: targets must be integer class indices, got dtype {t.dtype}")
    coeffs, divisor, out_shape = _coefficients(x, t, weight, ignore_index, 0.0, "nll_loss")
    return NLLLossFn.apply(x, coeffs=coeffs, reduction=reduction, divisor=divisor, out_shape=out_shape)


def check_no_legacy(op, size_average, reduce):
    """PyTorch's deprecated size_average / reduce keep their argument positions here but must stay None."""
    if size_average is not None or reduce is not None:
        raise ValueError(f"{op}: size_average and reduce are deprecated (as in PyTorch); use reduction=")


def _check_same_shape(x, t, op):
    if tuple(x.shape) != tuple(t.shape):
        raise ValueError(f"{op}: input has shape {tuple(x.shape)} but target has shape {tuple(t.shape)}; they must "
                         f"match (broadcasting them is a common silent bug, so minicompress refuses it)")


class MSELossFn(Function):
    name = "mse_loss"

    @staticmethod
    def forward(ctx, x, t, *, reduction):
        diff = x - t
        ctx.save_for_backward(diff)
        ctx.reduction = reduction
        return _reduce(diff * diff, reduction, max(diff.size, 1))

    @staticmethod
    def backward(ctx, grad):
        (diff,) = ctx.saved
        scale = grad if ctx.reduction != "mean" else grad / max(diff.size, 1)
        g = 2 * diff * scale
        need_x, need_t = ctx.needs_input_grad
        return (g if need_x else None), (-g if need_t else None)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """(input - target)^2 averaged ("mean"), summed ("sum") or per element ("none"); shapes must match."""
    check_no_legacy("mse_loss", size_average, reduce)
    x, t = as_tensor(input), as_tensor(target)
    check_reduction(reduction, "mse_loss")
    _check_same_shape(x, t, "mse_loss")
    if t.dtype != x.dtype and not t.requires_grad:  # an integer or float64 target must not change the dtype
        t = Tensor._wrap(t.data.astype(x.dtype), False)
    return MSELossFn.apply(x, t, reduction=reduction)


def _batch_size(x):
    return x.shape[0] if x.ndim else 1


class KLDivFn(Function):
    name = "kl_div"

    @staticmethod
    def forward(ctx, log_q, target, *, reduction, log_target):
        if log_target:
            p = np.exp(target)
            pointwise = p * (target - log_q)
        else:
            p = target
            pointwise = xlogy(target, target) - target * log_q
        ctx.save_for_backward(log_q, target, p)
        ctx.args = (reduction, log_target)
        pointwise = pointwise.astype(log_q.dtype, copy=False)
        if reduction == "batchmean":
            return _reduce(pointwise, "sum", 1) / log_q.dtype.type(_batch_size(log_q))
        return _reduce(pointwise, reduction, max(log_q.size, 1))

    @staticmethod
    def backward(ctx, grad):
        log_q, target, p = ctx.saved
        reduction, log_target = ctx.args
        if reduction == "mean":
            grad = grad / max(log_q.size, 1)
        elif reduction == "batchmean":
            grad = grad / _batch_size(log_q)
        need_q, need_t = ctx.needs_input_grad
        grad_q = -p * grad if need_q else None
        grad_t = None
        if need_t:
            if log_target:
                grad_t = grad * p * (target - log_q + 1)
            else:  # d/dp [p log p - p log q] = log p + 1 - log q; taken as 0 where p = 0
                with np.errstate(divide="ignore", invalid="ignore"):
                    grad_t = grad * np.where(target > 0, np.log(np.where(target > 0, target, 1)) + 1 - log_q, 0)
        return grad_q, grad_t


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """KL(p || q) pointwise with input = log q; reduction="batchmean" gives the per-sample KL divergence."""
    check_no_legacy("kl_div", size_average, reduce)
    x, t = as_tensor(input), as_tensor(target)
    check_reduction(reduction, "kl_div", ("none", "mean", "sum", "batchmean"))
    _check_same_shape(x, t, "kl_div")
    return KLDivFn.apply(x, t, reduction=reduction, log_target=bool(log_target))
