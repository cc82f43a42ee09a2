"""Statically quantized MultiheadAttention: the two batched matmuls of attention on int8 codes.

With Q, K, V (N, H, L, D) the projected heads, A the attention probabilities and C = A V the context:

    q_Q, q_K, q_V = quantize(Q | K | V, s, z)                    quint8 affine, observed ranges
    scores = float32(int_bmm(q_Q, q_K^T)) s_Q s_K / sqrt(D)      int8 x int8 -> int32 exact, zero points corrected
    A      = softmax(scores + mask)                              float (as PyTorch's quantizable MHA)
    q_A    = quantize(A, 1/256, 0)                               quint8 in [0, 1]: fixed qparams
    q_C    = quantize(float32(int_bmm(q_A, q_V)) s_A s_V, s_C, z_C)   s_C, z_C = out_proj's input qparams
    out    = QuantizedLinear(out_proj)(q_C)                      codes in, no float round-trip

The rescaling after each integer GEMM (x s_a s_b, / sqrt(D), quantize) is the epilogue of
integer_ops.int_bmm_epilogue: the same float32 steps as the unfused path dequantize -> bmm -> div -> quantize,
so the graph's INT8 bmm fusions (mc.graph.int8) reproduce this module bit for bit. The in-projection stays
float (F.linear on the packed weight), the out-projection is a QuantizedLinear.

Workflow: `prepare(model, attention_qconfig)` (or overrides={"...self_attn": attention_qconfig}) makes each
nn.MultiheadAttention an ObservedMultiheadAttention (observers on Q, K, V, A and the context = out_proj's input
observer); calibrate; `convert` gives QuantizedMultiheadAttention; `simulate` its fake-quantized twin.
A plain QConfig leaves MultiheadAttention as before (only out_proj is quantized). Activations of 8 bits only.
(Jacob et al., CVPR 2018; Bhandare et al., "Efficient 8-bit quantization of transformer NMT", 2019.)
"""
import math

import numpy as np

from ..core import Tensor
from ..nn.attention import MultiheadAttention
from ..nn.functional import softmax
from ..nn.module import Module
from . import integer_ops
from .modules import Observed
from .qconfig import QConfig, per_channel_qconfig
from .qparams import quantize
from .qtensor import QTensor

ATTENTION_PROBS_SCALE, ATTENTION_PROBS_QRANGE = 1.0 / 256, (0, 255)


class AttentionQConfig(QConfig):
    """A QConfig that also asks prepare() to quantize MultiheadAttention statically (the bmm's on codes)."""

    __slots__ = ()


attention_qconfig = AttentionQConfig(per_channel_qconfig.activation, per_channel_qconfig.weight)


class FixedQParamsObserver(Module):
    """Softmax output: fixed qparams (scale 1/256, zero point 0, quint8), nothing to observe."""

    def __init__(self, scale=ATTENTION_PROBS_SCALE, zero_point=0, quant_min=0, quant_max=255):
        super().__init__()
        self.scale, self.zero_point, self.quant_min, self.quant_max = scale, zero_point, quant_min, quant_max
        self.dtype, self.qscheme = "quint8", "fixed"

    def forward(self, x):
        return x

    def has_data(self):
        return True

    def calculate_qparams(self):
        return np.float32(self.scale), self.zero_point


def _check_8bit(observer, layer, what):
    inner = getattr(observer, "activation_post_process", observer)
    lo, hi = getattr(inner, "quant_min", None), getattr(inner, "quant_max", None)
    if lo is None or hi - lo != 255:
        raise ValueError(f"prepare: layer '{layer}' (MultiheadAttention): the integer bmm needs 8-bit activations "
                         f"for {what}, but the qconfig's activation observer gives range [{lo}, {hi}] "
                         f"({getattr(inner, 'dtype', '?')}); use an 8-bit qconfig or a plain QConfig to keep the "
                         "attention core in float")


def _copy_attention(target, mha):
    Module.__init__(target)
    for attr in ("embed_dim", "num_heads", "head_dim", "dropout", "batch_first"):
        object.__setattr__(target, attr, getattr(mha, attr))
    target.in_proj_weight = mha.in_proj_weight
    if mha.in_proj_bias is None:
        target.register_parameter("in_proj_bias", None)
    else:
        target.in_proj_bias = mha.in_proj_bias
    target.training = mha.training


def _prologue(mha, query, key, value):
    key = query if key is None else key
    value = key if value is None else value
    for name, t in (("query", query), ("key", key), ("value", value)):
        mha._check(name, t)
    if not mha.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    n, tgt_len, src_len = query.shape[0], query.shape[1], key.shape[1]
    if key.shape[0] != n or value.shape[:2] != key.shape[:2]:
        raise ValueError(f"{type(mha).__name__}: query {tuple(query.shape)}, key {tuple(key.shape)} and "
                         f"value {tuple(value.shape)} disagree on batch size or source length")
    return query, key, value, n, tgt_len, src_len


def _epilogue(mha, out, weights, need_weights, average_attn_weights):
    if not mha.batch_first:
        out = out.transpose(0, 1)
    if not need_weights:
        return out, None
    return out, (weights.mean(axis=1) if average_attn_weights else weights)


class ObservedMultiheadAttention(MultiheadAttention):
    """Prepared form: the float attention with observers on Q, K, V, on A (fixed qparams) and on the context
    (out_proj's input observer; out_proj is an Observed Linear)."""

    def __init__(self, mha, qconfig, name=""):
        _copy_attention(self, mha)
        self.layer_name, self.qconfig = name, qconfig
        self.q_observer, self.k_observer, self.v_observer = (qconfig.activation() for _ in range(3))
        self.attn_observer = FixedQParamsObserver()
        self.out_proj = Observed(mha.out_proj, qconfig, qconfig.activation(), name=f"{name}.out_proj")
        for what, obs in (("Q", self.q_observer), ("K", self.k_observer), ("V", self.v_observer),
                          ("the context", self.out_proj.input_observer)):
            _check_8bit(obs, name, what)

    def forward(self, query, key=None, value=None, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True):
        query, key, value, n, tgt_len, src_len = _prologue(self, query, key, value)
        q, k, v = self._in_projection(query, key, value)
        q, k, v = self.q_observer(q), self.k_observer(k), self.v_observer(v)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        mask = self._merge_masks(attn_mask, key_padding_mask, n, tgt_len, src_len, scores.dtype)
        if mask is not None:
            scores = scores + mask
        weights = self.attn_observer(softmax(scores, axis=-1))
        out = (weights @ v).permute(0, 2, 1, 3).reshape(n, tgt_len, self.embed_dim)
        return _epilogue(self, self.out_proj(out), weights, need_weights, average_attn_weights)


# ---- the integer modules ------------------------------------------------------------------------------------------
class QuantizeCodes(Module):
    """Float Tensor -> QTensor with fixed qparams (the float boundary before an integer bmm)."""

    def __init__(self, qp):
        super().__init__()
        self.qp = qp

    def forward(self, x):
        qp = self.qp
        arr = x.data if isinstance(x, Tensor) else np.asarray(x)
        return QTensor(quantize(arr, qp.scale, qp.zero_point, qp.qmin, qp.qmax), qp.scale, qp.zero_point,
                       qp.qmin, qp.qmax)

    def extra_repr(self):
        return repr(self.qp)


class QuantizedBmm(Module):
    """(q_a (..., M, K), q_b) QTensors -> int_bmm(q_a, q_b or q_b^T) then the epilogue:
    x s_a s_b [/ divisor] -> float Tensor, or [-> quantize(out_qp)] -> QTensor (heads merged: (N, L, H D))."""

    def __init__(self, a_qp, b_qp, transpose_b=False, divisor=None, out_qp=None, merge_heads=False, name=""):
        super().__init__()
        self.a_qp, self.b_qp, self.out_qp = a_qp, b_qp, out_qp
        self.transpose_b, self.divisor, self.merge_heads, self.layer_name = transpose_b, divisor, merge_heads, name

    def _codes(self, t, qp, what):
        if not isinstance(t, QTensor) or (t.scale, t.zero_point) != (qp.scale, qp.zero_point):
            raise ValueError(f"{self.layer_name}: the {what} operand must be a QTensor with scale {qp.scale} and "
                             f"zero point {qp.zero_point}")
        return t.q

    def forward(self, qa, qb):
        a, b = self._codes(qa, self.a_qp, "first"), self._codes(qb, self.b_qp, "second")
        if self.transpose_b:
            b = np.swapaxes(b, -1, -2)
        acc = integer_ops.int_bmm(a, self.a_qp.zero_point, b, self.b_qp.zero_point, self.layer_name)
        o = self.out_qp
        out = None if o is None else (o.scale, o.zero_point, o.qmin, o.qmax)
        y = integer_ops.int_bmm_epilogue(acc, self.a_qp.scale, self.b_qp.scale, self.divisor, out)
        if o is None:
            return Tensor(y)
        if self.merge_heads:                              # (N, H, L, D) -> (N, L, H D) on the codes
            n, h, length, d = y.shape
            y = np.ascontiguousarray(y.transpose(0, 2, 1, 3)).reshape(n, length, h * d)
        return QTensor(y, o.scale, o.zero_point, o.qmin, o.qmax)

    def extra_repr(self):
        div = "" if self.divisor is None else f" / {self.divisor:.4g}"
        out = "float" if self.out_qp is None else repr(self.out_qp)
        return f"a: {self.a_qp}\n  b{'^T' if self.transpose_b else ''}: {self.b_qp}{div}\n  output: {out}"


class QuantizedMultiheadAttention(MultiheadAttention):
    """convert(ObservedMultiheadAttention): both bmm's on int8 codes (see module docstring).

    q_qp, k_qp, v_qp, attn_qp: QuantParams; out_proj: the QuantizedLinear whose in_qp is the context's."""

    def __init__(self, observed, q_qp, k_qp, v_qp, attn_qp, out_proj):
        _copy_attention(self, observed)
        self.layer_name = observed.layer_name
        name = self.layer_name
        self.quant_q, self.quant_k, self.quant_v = QuantizeCodes(q_qp), QuantizeCodes(k_qp), QuantizeCodes(v_qp)
        self.scores_bmm = QuantizedBmm(q_qp, k_qp, transpose_b=True, divisor=math.sqrt(self.head_dim),
                                       name=f"{name}.scores_bmm")
        self.quant_attn = QuantizeCodes(attn_qp)
        self.context_bmm = QuantizedBmm(attn_qp, v_qp, out_qp=out_proj.in_qp, merge_heads=True,
                                        name=f"{name}.context_bmm")
        self.out_proj = out_proj
        out_proj.output_quantized = False
        self.training = False

    def forward(self, query, key=None, value=None, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True):
        query, key, value, n, tgt_len, src_len = _prologue(self, query, key, value)
        q, k, v = self._in_projection(query, key, value)
        q_codes, k_codes, v_codes = self.quant_q(q), self.quant_k(k), self.quant_v(v)
        scores = self.scores_bmm(q_codes, k_codes)                  # float32 (N, H, L, S), / sqrt(D) applied
        mask = self._merge_masks(attn_mask, key_padding_mask, n, tgt_len, src_len, scores.dtype)
        if mask is not None:
            scores = scores + mask
        weights = softmax(scores, axis=-1)
        context = self.context_bmm(self.quant_attn(weights), v_codes)  # QTensor (N, L, E), out_proj's qparams
        return _epilogue(self, self.out_proj(context), weights, need_weights, average_attn_weights)
