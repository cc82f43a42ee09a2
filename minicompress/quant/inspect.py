"""Inspection: model size in bytes, and a layer-by-layer comparison of a float model with its quantized twin.

    model_size_bytes(model)      sum of nbytes of every parameter and buffer (int8 weights count 1 byte each)
    compare_models(float_model, qmodel, x) -> rows, one per layer present in both (by dotted name), with
        mse = mean((y_f - y_q)^2),  sqnr_db = 10 log10(sum y_f^2 / sum (y_f - y_q)^2),
        cosine = <y_f, y_q> / (|y_f| |y_q|)
    and a last row "(model output)". Outputs are captured with forward hooks (QTensors are dequantized).
"""
import numpy as np

from ..core import Tensor, no_grad


def model_size_bytes(model):
    total = sum(p.data.nbytes for p in model.parameters())
    for m in model.modules():
        for b in m._buffers.values():
            if b is not None:
                total += np.asarray(b).nbytes
    return int(total)


def _as_array(y):
    if isinstance(y, tuple):
        y = y[0]
    if hasattr(y, "dequantize") and not isinstance(y, Tensor):
        y = y.dequantize()
    return np.asarray(y.data if isinstance(y, Tensor) else y, dtype=np.float64)


def _capture(model, x):
    outs, handles = {}, []
    for name, m in model.named_modules():
        if name:
            handles.append(m.register_forward_hook(lambda mod, a, y, name=name: outs.__setitem__(name, _as_array(y))))
    try:
        with no_grad():
            final = _as_array(model(x if isinstance(x, Tensor) else Tensor(x)))
    finally:
        for h in handles:
            h.remove()
    return outs, final


def error_row(name, yf, yq):
    diff = yf - yq
    noise = float(np.sum(diff ** 2))
    signal = float(np.sum(yf ** 2))
    sqnr = float("inf") if noise == 0 else 10 * np.log10(max(signal, 1e-300) / noise)
    denom = np.linalg.norm(yf) * np.linalg.norm(yq)
    cosine = float(np.sum(yf * yq) / denom) if denom > 0 else float("nan")
    return {"layer": name, "mse": float(np.mean(diff ** 2)), "sqnr_db": sqnr, "cosine": cosine}


def _fused_groups(qmodel):
    """{quantized layer name: name of the last float module it absorbed} for BN / ReLU fused into it."""
    from .modules import Identity
    groups = {}
    for seq_name, seq in qmodel.named_modules():
        keys = list(seq._modules) if type(seq).__name__ in ("Sequential",) or hasattr(seq, "__getitem__") else []
        for i, key in enumerate(keys):
            j = i
            while j + 1 < len(keys) and isinstance(seq._modules[keys[j + 1]], Identity):
                j += 1
            if j > i:
                name = f"{seq_name}.{key}" if seq_name else key
                groups[name] = f"{seq_name}.{keys[j]}" if seq_name else keys[j]
    return groups


def compare_models(float_model, qmodel, x):
    """Per-layer MSE / SQNR (dB) / cosine between the two models' outputs on input batch x (list of dicts).

    Layers are matched by name. A quantized layer that absorbed a folded BatchNorm and a fused ReLU is compared
    with the float output of the last module it absorbed (row "1+3": conv 1 through relu 3); the placeholders
    left by fusion get no row of their own.
    """
    from .modules import Identity
    f_outs, f_final = _capture(float_model, x)
    q_outs, q_final = _capture(qmodel, x)
    groups = _fused_groups(qmodel)
    absorbed = {n for n, m in qmodel.named_modules() if isinstance(m, Identity)}
    rows = []
    for name in f_outs:
        if name not in q_outs or name in absorbed:
            continue
        target = groups.get(name, name)
        if f_outs[target].shape == q_outs[name].shape:
            rows.append(error_row(name if target == name else f"{name}+{target.split('.')[-1]}",
                                  f_outs[target], q_outs[name]))
    rows.append(error_row("(model output)", f_final, q_final))
    return rows


def format_comparison(rows):
    lines = [f"{'layer':<24}{'mse':>12}{'sqnr_db':>10}{'cosine':>10}"]
    lines += [f"{r['layer']:<24}{r['mse']:>12.3e}{r['sqnr_db']:>10.2f}{r['cosine']:>10.5f}" for r in rows]
    return "\n".join(lines)
