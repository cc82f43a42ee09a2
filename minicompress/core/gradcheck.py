"""Central-difference gradient check: does an op's `backward` agree with its `forward`?

For f: R^n -> R^m and a random projection v, compare the analytic gradient of L = <v, f(x)> from
`backward` with the numeric one

    dL/dx_i  ~  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)        error O(eps^2)

element by element, in float64 (float32 has too few digits for eps ~ 1e-6). Use it on every new op:

    >>> from minicompress.core.gradcheck import gradcheck
    >>> x = Tensor(np.random.randn(3, 4), dtype=np.float64, requires_grad=True)
    >>> gradcheck(lambda t: (t * t).sum(axis=1), [x])
    True
"""
import numpy as np

from .tensor import Tensor


def numeric_grad(fn, inputs, projection, eps=1e-6):
    """The central-difference gradient of <projection, fn(*inputs)> w.r.t. each input that requires grad."""
    grads = []
    for t in inputs:
        if not (isinstance(t, Tensor) and t.requires_grad):
            grads.append(None)
            continue
        g = np.zeros_like(t.data)
        flat, gflat = t.data.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + eps
            plus = np.sum(projection * fn(*inputs).data)
            flat[i] = saved - eps
            minus = np.sum(projection * fn(*inputs).data)
            flat[i] = saved
            gflat[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Raise AssertionError naming the input and element where analytic and numeric gradients differ.

    fn: callable taking the Tensors in `inputs` and returning a Tensor. Inputs that require grad must
    be float64. Returns True when every gradient agrees within `atol + rtol * |numeric|`.
    """
    for k, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {k} is {t.dtype}; use float64 (Tensor(..., dtype=np.float64))")
    out = fn(*inputs)
    projection = np.random.default_rng(seed).standard_normal(out.shape)
    for t in inputs:
        if isinstance(t, Tensor):
            t.grad = None
    (out * Tensor(projection, dtype=np.float64)).sum().backward()
    numeric = numeric_grad(fn, inputs, projection, eps)
    for k, (t, num) in enumerate(zip(inputs, numeric)):
        if num is None:
            continue
        ana = t.grad if t.grad is not None else np.zeros_like(num)
        bad = np.abs(ana - num) > atol + rtol * np.abs(num)
        if bad.any():
            i = tuple(int(j) for j in np.unravel_index(np.argmax(np.abs(ana - num)), num.shape))
            raise AssertionError(f"gradcheck: input {k} (shape {num.shape}) element {i}: "
                                 f"analytic {ana[i]:.8g} vs numeric {num[i]:.8g}; "
                                 f"{int(bad.sum())} of {bad.size} elements disagree")
    return True
