"""Per-layer report: what each layer stores and computes, and how far its output is from the float model's.

One row per module that holds arrays itself (Linear, Conv2d, norms, quantized and sparse layers, a model's
own parameters such as a CLS token). Columns:

    dtype, w_bits, a_bits   fp32 (32/32), bf16 under mc.precision.LowPrecision (16/16), quantized layers
                            from their stored qparams (qint8 weights: 8, quint8 activations: 8;
                            dynamic layers quantize activations to 8 bits per batch)
    scheme, granularity     of the weights: sym / asym, per_tensor / per_channel ("-" for float layers)
    observer                the activation observer that chose the input range ("-" for float layers)
    sparsity                fraction of weights equal to 0 (quantized: q_w == zero point, which dequantizes to 0)
    params                  number of stored weight + bias values (a CSR weight: its nonzeros)
    bytes                   bytes of the arrays the module holds (report/size.py)
    macs                    multiply-accumulates per sample, measured with a forward hook:
                            |W| * (output elements per sample) / (output channels)   -- Linear: |W| * tokens,
                            Conv2d: |W| * H_out * W_out; MultiheadAttention (batch first, L tokens, width E):
                            3E*E*L for the q, k, v projections + 2*L*L*E for Q K^T and A V (out_proj: own row)
    bops                    bit operations per sample, macs * w_bits * a_bits (Baskin et al. 2021;
                            van Baalen et al., "Bayesian Bits", NeurIPS 2020)
    sqnr_db, cosine         of this layer's output against the same-named layer of a float reference model,
                            both fed the same model input (so error from earlier layers is included, as in
                            PyTorch's Numeric Suite `compare_model_outputs`); when quantization folded a
                            BatchNorm / fused a ReLU into the layer (Identity siblings follow it), against
                            the float model's output after that BatchNorm / ReLU:
                            SQNR = 10 log10( sum y_f^2 / sum (y_f - y_q)^2 ),  cos = <y_f, y_q> / (|y_f| |y_q|)

Whole model: params, bytes (and the float reference's, with the ratio), MACs, BOPs, measured latency,
and the output's SQNR / cosine. `summarize(model, example_input, reference=None)` returns a `ModelReport`
with `.rows`, `.totals`, `.table()`, `.to_dict()` and `.save_json(path)`.
"""
import json
import math

import numpy as np

from ..core import Tensor, no_grad
from .latency import measure_latency_ms
from .size import model_size_bytes, module_arrays, module_size_bytes

COLUMNS = ("name", "type", "dtype", "w_bits", "a_bits", "scheme", "granularity", "observer", "sparsity", "params",
           "bytes", "macs", "bops", "sqnr_db", "cosine")


class ModelReport:
    def __init__(self, rows, totals):
        self.rows, self.totals = rows, totals

    def table(self):
        """The per-layer table and a totals line, as plain text."""
        w = max([5] + [len(r["name"] or "(root)") for r in self.rows])
        w = min(w, 40)
        head = (f"{'layer':<{w}} {'type':<22} {'dtype':<6} {'bits w/a':>8} {'scheme':<6} {'gran.':<11} "
                f"{'observer':<14} {'sparsity':>8} {'params':>8} {'bytes':>9} {'MACs':>9} {'BOPs':>11} "
                f"{'SQNR dB':>8} {'cosine':>8}")
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{_cut(r['name'] or '(root)', w):<{w}} {_cut(r['type'], 22):<22} {r['dtype']:<6} "
                         f"{r['w_bits']:>4}/{r['a_bits']:<3} {r['scheme']:<6} {r['granularity']:<11} "
                         f"{_cut(str(r['observer']).replace('Observer', ''), 14):<14} {r['sparsity']:>8.1%} "
                         f"{r['params']:>8} {r['bytes']:>9} "
                         f"{r['macs']:>9} {r['bops']:>11.3g} {_num(r['sqnr_db'], '8.1f')} {_num(r['cosine'], '8.5f')}")
        t = self.totals
        lines.append("-" * len(head))
        ratio = f" ({t['compression_ratio']:.2f}x smaller than float)" if t.get("compression_ratio") else ""
        lines.append(f"total: {t['params']} params, {t['bytes']} bytes{ratio}, {t['macs']} MACs, "
                     f"{t['bops']:.3g} BOPs per sample" +
                     (f", latency {t['latency_ms']:.3f} ms for a batch of {t['batch']}" if t.get("latency_ms") else "")
                     + (f", output SQNR {t['output_sqnr_db']:.1f} dB, cosine {t['output_cosine']:.5f}"
                        if t.get("output_sqnr_db") is not None else ""))
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def to_dict(self):
        return {"rows": [_jsonable(r) for r in self.rows], "totals": _jsonable(self.totals)}

    def save_json(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)
        return path


def summarize(model, example_input=None, reference=None, latency=True, repeat=5):
    """A ModelReport of `model` on `example_input` (a batch), compared with the float `reference` if given.

    Without an example input the columns that need a forward pass (MACs, BOPs, SQNR, latency) are 0 / None."""
    x = None if example_input is None else _as_input(example_input)
    batch = None if x is None else x.shape[0]
    rows = []
    wrappers = {name: m for name, m in model.named_modules() if type(m).__name__ == "LowPrecision"}
    for name, module in model.named_modules():
        if not module_arrays(module) and not (name in wrappers):
            continue
        if name in wrappers:
            continue  # the wrapped module's row carries the wrapper's name (below)
        rows.append(_layer_row(name, module, wrappers))
    for r in rows:
        r["ref_name"] = _absorbed_name(model, r["ref_name"])
    outputs = {} if x is None else _capture(model, x, [r["hook_name"] for r in rows])
    ref_outputs = None
    if reference is not None and x is not None:
        ref_outputs = _capture(reference, x, [r["ref_name"] for r in rows] + [""])
    for r in rows:
        out = outputs.get(r["hook_name"])
        r["macs"] = _macs(r.pop("_weight_shape"), out, batch)
        r["bops"] = r["macs"] * r["w_bits"] * r["a_bits"]
        ref = None if ref_outputs is None else ref_outputs.get(r["ref_name"])
        r["sqnr_db"], r["cosine"] = _compare(ref, out)
        r.pop("hook_name"), r.pop("ref_name")
    totals = {"params": sum(r["params"] for r in rows), "bytes": model_size_bytes(model),
              "macs": sum(r["macs"] for r in rows), "bops": sum(r["bops"] for r in rows), "batch": batch}
    if reference is not None:
        totals["float_bytes"] = model_size_bytes(reference)
        totals["compression_ratio"] = totals["float_bytes"] / max(totals["bytes"], 1)
    if ref_outputs is not None:
        totals["output_sqnr_db"], totals["output_cosine"] = _compare(ref_outputs.get(""), outputs.get(""))
    if latency and x is not None:
        totals["latency_ms"] = measure_latency_ms(model, x, repeat=repeat)
        if reference is not None:
            totals["float_latency_ms"] = measure_latency_ms(reference, x, repeat=repeat)
    return ModelReport(rows, totals)


# ---- one row ---------------------------------------------------------------------------------------------------
def _layer_row(name, module, wrappers):
    parent = name.rpartition(".")[0] if "." in name else ""
    wrapped = name.endswith(".module") and parent in wrappers or (name == "module" and "" in wrappers)
    row_name = parent if wrapped else name
    row = {"name": row_name, "type": type(module).__name__, "dtype": "fp32", "w_bits": 32, "a_bits": 32,
           "scheme": "-", "granularity": "-", "observer": "-", "hook_name": row_name, "ref_name": row_name}
    arrays = dict(module_arrays(module))
    info = getattr(module, "w_info", None)
    q = getattr(module, "weight_int", None)             # int8 codes (unpacked if stored two per byte)
    if isinstance(q, np.ndarray) and isinstance(info, dict):
        zp = np.asarray(arrays.get("weight_zero_point", 0)).reshape((-1,) + (1,) * (q.ndim - 1))
        qscheme = str(info.get("qscheme", ""))
        in_qp = getattr(module, "in_qp", None)
        row.update(dtype=str(info.get("dtype", "qint8")).lstrip("q"), w_bits=_bits(info.get("dtype")),
                   a_bits=_bits(getattr(in_qp, "dtype", "quint8")),
                   scheme="sym" if qscheme.endswith("symmetric") else "asym",
                   granularity="per_channel" if qscheme.startswith("per_channel") else "per_tensor",
                   observer=str(getattr(in_qp, "observer", "dynamic" if in_qp is None else "-")),
                   sparsity=float(np.mean(q == zp)) if q.size else 0.0,
                   params=int(q.size + sum(a.size for k, a in arrays.items() if k in ("bias_int", "bias"))),
                   _weight_shape=q.shape)
    else:
        weight = _float_weight(module, arrays)
        if wrapped:
            row.update(dtype=wrappers[row_name].dtype, w_bits=16, a_bits=16)
        csr, nm_values = getattr(module, "weight_csr", None), module._buffers.get("values")
        stored = (0 if csr is None else csr.nnz) + (0 if nm_values is None else nm_values.size)
        row.update(sparsity=float(np.mean(weight == 0)) if weight is not None and weight.size else 0.0,
                   params=int(sum(p.data.size for p in module._parameters.values() if p is not None)
                              + stored),  # CSR: the stored nonzeros; N:M: the kept values
                   _weight_shape=None if weight is None else weight.shape)
        if "bias" in module._buffers and module._buffers["bias"] is not None and "bias" not in module._parameters:
            row["params"] += int(np.asarray(module._buffers["bias"]).size)
    row["bytes"] = module_size_bytes(module, recurse=False)
    return row


def _absorbed_name(model, name):
    """The float layer whose output this layer's output stands for: quantization folds a following BatchNorm
    and fuses a following ReLU into the layer, leaving Identity modules in their place (quant/quantize.py),
    so the comparison skips forward over those Identity siblings."""
    if not name:
        return name
    parent_name, _, child = name.rpartition(".")
    keys = list(model.get_submodule(parent_name)._modules)
    position = keys.index(child)
    while position + 1 < len(keys) and type(model.get_submodule(parent_name)._modules[keys[position + 1]]).__name__ \
            == "Identity":
        position += 1
    return f"{parent_name}.{keys[position]}" if parent_name else keys[position]


def _float_weight(module, arrays):
    if "in_proj_weight" in arrays:  # MultiheadAttention: the packed q, k, v projection (out_proj has its own row)
        return np.asarray(arrays["in_proj_weight"])
    csr = getattr(module, "weight_csr", None)
    if csr is not None:  # prune.SparseLinear: the zeros are not stored
        return np.asarray(csr.todense())
    if hasattr(module, "dense_weight"):  # prune.NMSparseLinear: only the kept values and their positions
        return module.dense_weight()
    w = arrays.get("weight")
    return None if w is None else np.asarray(w)


def _bits(dtype):
    digits = "".join(ch for ch in str(dtype) if ch.isdigit())
    return int(digits) if digits else 8


# ---- measuring ------------------------------------------------------------------------------------------------
def _capture(model, x, names):
    """{name: float64 output array} of the named modules (and "" for the model) on input x."""
    wanted = set(names)
    outputs, handles = {}, []
    for name, m in model.named_modules():
        if name in wanted and name != "":
            handles.append(m.register_forward_hook(
                lambda mod, args, out, name=name: outputs.__setitem__(name, _to_array(out))))
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with no_grad():
            outputs[""] = _to_array(model(x))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return outputs


def _to_array(out):
    if hasattr(out, "dequantize"):  # a QTensor between integer layers
        out = out.dequantize()
    if isinstance(out, Tensor):
        out = out.data
    if isinstance(out, tuple):  # attention returns (output, weights)
        out = out[0]
        return _to_array(out)
    return np.asarray(out, dtype=np.float64)


def _macs(weight_shape, out, batch):
    if weight_shape is None or out is None or batch is None or len(weight_shape) not in (2, 4) or out.ndim < 2:
        return 0
    n_weights, channels = int(np.prod(weight_shape)), weight_shape[0]
    if len(weight_shape) == 2 and out.shape[-1] == channels:  # Linear: (..., out_features)
        return n_weights * int(np.prod(out.shape[:-1])) // batch
    if len(weight_shape) == 2 and channels == 3 * out.shape[-1] and out.ndim == 3:  # attention, (N, L, E) batch first
        tokens, embed = out.shape[1], out.shape[2]
        return n_weights * tokens + 2 * tokens * tokens * embed  # q, k, v projections + QK^T + AV
    if len(weight_shape) == 4 and out.ndim == 4 and out.shape[1] == channels:  # Conv2d: (N, C_out, H, W)
        return n_weights * int(np.prod(out.shape[2:])) * out.shape[0] // batch
    return 0


def _compare(ref, out):
    if ref is None or out is None or ref.shape != out.shape:
        return None, None
    noise = float(np.sum((ref - out) ** 2))
    signal = float(np.sum(ref ** 2))
    sqnr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    norms = float(np.linalg.norm(ref) * np.linalg.norm(out))
    cosine = float(np.sum(ref * out) / norms) if norms > 0 else (1.0 if noise == 0 else 0.0)
    return sqnr, cosine


def _as_input(x):
    if isinstance(x, Tensor):
        return x
    return Tensor(np.asarray(x, dtype=np.float32))


def _cut(text, width):
    text = str(text)
    return text if len(text) <= width else text[:width - 1] + "~"


def _num(value, fmt):
    width = int(fmt.split(".")[0])
    if value is None:
        return f"{'-':>{width}}"
    return format(value, fmt)


def _jsonable(row):
    out = {}
    for k, v in row.items():
        if isinstance(v, (np.generic,)):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = str(v)  # "inf" (bit-equal outputs) stays visible in JSON
        out[k] = v
    return out
