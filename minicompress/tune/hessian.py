"""Hessian traces by Hutchinson's estimator, and HAWQ's layer sensitivity for mixed 8/4-bit quantization.

Hutchinson (1990): for a random vector v with independent Rademacher entries (+1 or -1, each with p = 1/2),

    E[v^T H v] = Tr(H)        so   Tr(H) ~ (1/m) * sum_{k=1..m} v_k^T H v_k

and with one v drawn over *all* layers jointly, v_i^T (Hv)_i estimates the trace of layer i's diagonal block
H_ii (the cross terms v_i^T H_ij v_j have mean 0), so one Hessian-vector product per sample serves every layer.

Hessian-vector product. minicompress's autograd computes first derivatives only (there is no double
backward), so Hv comes from a central difference of two gradients:

    H v ~ (g(w + eps v) - g(w - eps v)) / (2 eps)          g = dL/dw, error O(eps^2 * |L'''|)

evaluated in float64 on a copy of the model (float32 gradients would drown the difference in round-off).
At a ReLU kink the gradient jumps; a small eps (default 1e-5 in float64) keeps such crossings rare.

HAWQ-V2 sensitivity of layer i quantized to b bits (Dong et al., NeurIPS 2020, eq. 4):

    Omega_i = Tr(H_ii) / n_i * || Q_b(W_i) - W_i ||_2^2        n_i = number of weights of layer i

Q_b: symmetric per-output-channel b-bit quantization (scale = max|w| / ((qmax - qmin) / 2), DESIGN.md).
Low Omega -> the layer tolerates few bits. The loss is the cross-entropy on the calibration batches, with
the batch's labels when a batch is (x, y), else the float model's own predictions (argmax) as labels.

References: Hutchinson, "A stochastic estimator of the trace of the influence matrix", 1990;
Dong et al., "HAWQ: Hessian AWare Quantization", ICCV 2019; "HAWQ-V2", NeurIPS 2020; Yao et al.,
"PyHessian", 2020 (the same estimator with exact double backward).
"""
import copy

import numpy as np

from ..core import Tensor, no_grad, rng


def hutchinson_trace(loss_fn, params, n_samples=16, eps=1e-5):
    """Estimate Tr(H_pp) for each parameter p in `params` (a list of Parameters) of the scalar `loss_fn()`.

    Returns a float64 array of len(params). `loss_fn` must recompute the loss from the current values of
    `params` (it is called 2 * n_samples times with perturbed weights; the weights are restored after).
    """
    if not params:
        raise ValueError("hutchinson_trace: params is empty")
    if n_samples < 1:
        raise ValueError(f"hutchinson_trace: n_samples must be >= 1, got {n_samples}")
    originals = [p.data.copy() for p in params]
    traces = np.zeros(len(params), dtype=np.float64)
    try:
        for _ in range(n_samples):
            vs = [rng().choice(np.array([-1.0, 1.0]), size=p.data.shape).astype(p.data.dtype) for p in params]
            g_plus = _gradients_at(loss_fn, params, originals, vs, +eps)
            g_minus = _gradients_at(loss_fn, params, originals, vs, -eps)
            for i, v in enumerate(vs):
                hv = (g_plus[i] - g_minus[i]) / (2 * eps)
                traces[i] += float(np.sum(v * hv))
    finally:
        for p, w in zip(params, originals):
            p.data = w
            p.grad = None
    return traces / n_samples


def hessian_vector_product(loss_fn, params, vs, eps=1e-5):
    """(g(w + eps v) - g(w - eps v)) / (2 eps) for each parameter: the finite-difference H v."""
    originals = [p.data.copy() for p in params]
    try:
        g_plus = _gradients_at(loss_fn, params, originals, vs, +eps)
        g_minus = _gradients_at(loss_fn, params, originals, vs, -eps)
    finally:
        for p, w in zip(params, originals):
            p.data = w
            p.grad = None
    return [(gp - gm) / (2 * eps) for gp, gm in zip(g_plus, g_minus)]


def _gradients_at(loss_fn, params, originals, vs, step):
    for p, w, v in zip(params, originals, vs):
        p.data = w + step * v
        p.grad = None
    loss = loss_fn()
    loss.backward()
    return [np.zeros_like(p.data) if p.grad is None else np.array(p.grad, dtype=np.float64) for p in params]


def weight_quant_error(weight, bits=4):
    """|| Q_b(W) - W ||^2 with symmetric per-output-channel b-bit quantization (axis 0)."""
    w = np.asarray(weight, dtype=np.float64)
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    scale = np.maximum(amax / ((qmax - qmin) / 2), np.finfo(np.float32).eps)
    scale = scale.reshape((-1,) + (1,) * (w.ndim - 1))
    q = np.clip(np.rint(w / scale), qmin, qmax)
    return float(np.sum((q * scale - w) ** 2))


def hawq_sensitivity(model, ops, calib_data, bits=4, n_samples=8, eps=1e-5, max_batches=4):
    """{op: Omega_op} (HAWQ-V2) for the modules named in `ops`, from the first `max_batches` calibration batches.

    Works on a float64 copy of `model`; the model itself is not changed.
    """
    batches = list(calib_data)[:max_batches]
    if not batches:
        raise ValueError("hawq_sensitivity: calib_data is empty")
    work = copy.deepcopy(model).to(np.float64)
    work.eval()
    for p in work.parameters():
        p.requires_grad = False
    params = []
    for op in ops:
        weight = getattr(work.get_submodule(op), "weight", None)
        if weight is None:
            raise ValueError(f"hawq_sensitivity: operator {op!r} has no weight")
        weight.requires_grad = True
        params.append(weight)
    inputs, labels = [], []
    for batch in batches:
        x, y = batch if isinstance(batch, (tuple, list)) and len(batch) == 2 else (batch, None)
        x = Tensor(np.asarray(x.data if isinstance(x, Tensor) else x, dtype=np.float64), dtype=np.float64)
        if y is None:
            with no_grad():
                y = np.argmax(work(x).data, axis=-1)
        inputs.append(x)
        labels.append(np.asarray(y, dtype=np.int64))

    def loss_fn():
        total = None
        for x, y in zip(inputs, labels):
            term = cross_entropy(work(x), y)
            total = term if total is None else total + term
        return total * (1.0 / len(inputs))

    traces = hutchinson_trace(loss_fn, params, n_samples=n_samples, eps=eps)
    return {op: float(trace / p.data.size * weight_quant_error(p.data, bits))
            for op, trace, p in zip(ops, traces, params)}


def cross_entropy(logits, targets):
    """mean_n( logsumexp(z_n) - z_n[y_n] ) with Tensor ops (a one-hot mask picks z_n[y_n])."""
    z = logits - Tensor(logits.data.max(axis=-1, keepdims=True))
    log_norm = z.exp().sum(axis=-1).log()
    onehot = np.zeros(z.shape, dtype=z.data.dtype)
    onehot[np.arange(z.shape[0]), targets] = 1
    picked = (z * Tensor(onehot, dtype=onehot.dtype)).sum(axis=-1)
    return (log_norm - picked).mean()
