"""Integer modules of a converted model (static PTQ) and dynamically quantized Linear.

QuantizedLinear / QuantizedConv2d (Jacob et al., CVPR 2018), with s_x, z_x the input's qparams, s_w (per
output channel) the weight's, s_y, z_y the output's:

    q_w = quantize(W, s_w, 0)  int8, ahead of time          q_b = rint(b / (s_x s_w))  int32
    acc = sum_k (q_x - z_x) q_w + q_b                        int32
    q_y = clamp(round(acc * M) + z_y, qmin, qmax)            M = s_x s_w / s_y = M0 2^-n, M0 in [0.5, 1)
    fused ReLU: qmin -> max(qmin, z_y)                       (relu(0) = 0 is the code z_y)
All of it runs in integer_ops.IntLinear / IntConv2d: the weight packed once (at convert, or on the first call
after a load), one fused kernel per call. Weights of at most 4 bits are stored two codes per byte (int4.py:
buffer `weight_int4`, unpacked when the kernel is built), others as int8 (`weight_int`); `layer.weight_int`
gives the int8 codes either way. The packed weight lives in _KERNELS, outside the module: it is never
saved and is rebuilt whenever the buffers it came from are replaced (load_state_dict).

Input: a QTensor (integer path from the previous layer, rescaled in integers if its qparams differ) or a
float Tensor (quantized here: the float boundary). Output: a QTensor when `output_quantized` (the next layer
is integer), otherwise dequantized to a float Tensor.

QuantizedAdd: the integer residual add (integer_ops.int_add). QuantizedReLU / QuantizedFlatten /
QuantizedMaxPool2d / the Dropout-in-eval identity act on the integer codes directly (they commute with the
monotone map q -> (q - z) s), and on float Tensors as usual.

DynamicQuantizedLinear (the seed's BERT example; torch.ao.nn.quantized.dynamic.Linear): int8 per-channel
weights ahead of time; at run time the activation range is measured on each batch (or each row with
per_row=True), x is quantized to uint8 affine, acc is int32, and the output is float:
    y = s_x s_w * acc + b
"""
import operator
import weakref

import numpy as np

from ..core import Tensor
from ..nn.module import Module
from . import integer_ops
from .int4 import INT4_MAX, INT4_MIN, pack_int4, unpack_int4
from .qparams import qrange, quantize
from .qtensor import QTensor


# module -> (the arrays / qparams it was built from, its integer_ops layer object). Not an attribute of the
# module, so it is never saved (report.save / state_dict) and never deep-copied; rebuilt on the first call
# after a load, a deepcopy or a load_state_dict (which replaces the buffers: the identity check sees it).
_KERNELS = weakref.WeakKeyDictionary()


def _cached_kernel(module, sources, build):
    """The object build() made from `sources` (the module's buffers and qparams), rebuilt if any of them is no
    longer the same object."""
    entry = _KERNELS.get(module)
    if entry is None or len(entry[0]) != len(sources) or not all(map(operator.is_, entry[0], sources)):
        entry = (sources, build())
        _KERNELS[module] = entry
    return entry[1]


def _describe(scale, zp):
    scale, zp = np.atleast_1d(scale), np.atleast_1d(zp)
    if scale.size == 1:
        return f"scale={float(scale[0]):.4g}, zp={int(zp[0])}"
    return f"scale in [{scale.min():.3g}, {scale.max():.3g}], zp in [{zp.min()}, {zp.max()}]"


class QuantParams:
    """(scale, zero_point, qmin, qmax) of an activation, with a name for printing."""

    def __init__(self, scale, zero_point, qmin, qmax, dtype, qscheme, observer):
        self.scale, self.zero_point, self.qmin, self.qmax = np.float32(scale), int(zero_point), qmin, qmax
        self.dtype, self.qscheme, self.observer = dtype, qscheme, observer
        if qmin < -128 or qmax > 255:
            raise ValueError(f"the integer path takes activations of at most 8 bits, got range [{qmin}, {qmax}] "
                             f"({dtype}); keep this layer in float with overrides={{'<layer>': None}}")

    def __repr__(self):
        return f"{self.dtype} {self.qscheme} {_describe(self.scale, self.zero_point)} ({self.observer})"


class _QuantizedWeighted(Module):
    """Shared by QuantizedLinear and QuantizedConv2d: weights, bias and requantization multipliers."""

    def __init__(self, weight, bias, w_scale, w_zp, w_info, in_qp, out_qp, relu, name):
        super().__init__()
        self.layer_name, self.relu = name, relu
        self.in_qp, self.out_qp, self.w_info = in_qp, out_qp, w_info
        self.out_features = weight.shape[0]
        w_scale = np.broadcast_to(np.asarray(w_scale, dtype=np.float32), (self.out_features,)).copy()
        w_zp = np.broadcast_to(np.asarray(w_zp, dtype=np.int64), (self.out_features,)).astype(np.int8)
        codes = quantize(weight, w_scale, w_zp, w_info["qmin"], w_info["qmax"], axis=0)
        if codes.dtype != np.int8:
            raise ValueError(f"{name}: the integer path takes weights of at most 8 bits (signed), got "
                             f"{w_info['dtype']}; keep this layer in float with overrides={{'{name}': None}}")
        if INT4_MIN <= w_info["qmin"] and w_info["qmax"] <= INT4_MAX:      # 4 bits or fewer: half a byte each
            self.register_buffer("weight_int4", pack_int4(codes))
            self.weight_shape = codes.shape
        else:
            self.register_buffer("weight_int", codes)
        self.register_buffer("weight_scale", w_scale)
        self.register_buffer("weight_zero_point", w_zp)
        bias_scale = in_qp.scale.astype(np.float64) * w_scale.astype(np.float64)
        if bias is not None:
            q_b = np.rint(np.asarray(bias, dtype=np.float64) / bias_scale)
            if np.abs(q_b).max() > integer_ops.INT32_MAX:
                raise ValueError(f"{name}: the bias does not fit int32 at scale s_x*s_w")
            self.register_buffer("bias_int", q_b.astype(np.int32))
        else:
            self.register_buffer("bias_int", None)
        m0, shift = integer_ops.quantize_multiplier(bias_scale / np.float64(out_qp.scale))
        self.register_buffer("multiplier_m0", np.asarray(m0, dtype=np.int32))
        self.register_buffer("multiplier_shift", np.asarray(shift, dtype=np.int8))
        self.output_quantized = False

    @property
    def weight_int(self):
        """The int8 weight codes (out_features, ...): stored as they are, or two per byte for <= 4 bits."""
        packed = self._buffers.get("weight_int4")
        return self._buffers["weight_int"] if packed is None else unpack_int4(packed, self.weight_shape)

    def _kernel(self):
        """This layer's integer_ops object (weight packed once; cached outside the module, see _KERNELS)."""
        sources = (*self._buffers.values(), self.in_qp, self.out_qp, self.relu)
        return _cached_kernel(self, sources, self._build_kernel)

    def _build_kernel(self):
        qmin, qmax = self._out_range()
        weight = self.weight_int
        return integer_ops.IntLinear(weight.reshape(weight.shape[0], -1), self.weight_zero_point,
                                     self.in_qp.zero_point, self.in_qp.qmin, self.in_qp.qmax, self.bias_int,
                                     self.multiplier_m0, self.multiplier_shift, self.out_qp.zero_point, qmin, qmax,
                                     self.layer_name)

    def _input(self, x):
        qp = self.in_qp
        if isinstance(x, QTensor):
            if x.scale == qp.scale and x.zero_point == qp.zero_point and x.qmin == qp.qmin and x.qmax == qp.qmax:
                return x.q
            return integer_ops.rescale(x.q, x.scale, x.zero_point, qp.scale, qp.zero_point, qp.qmin, qp.qmax)
        return integer_ops.quantize_input(x.data if isinstance(x, Tensor) else x, qp.scale, qp.zero_point, qp.qmin,
                                          qp.qmax)

    def _output(self, q):
        qp = self.out_qp
        if self.output_quantized:
            return QTensor(q, qp.scale, qp.zero_point, qp.qmin, qp.qmax)
        return Tensor(integer_ops.dequantize_output(q, qp.scale, qp.zero_point))

    def _out_range(self):
        qmin = max(self.out_qp.qmin, self.out_qp.zero_point) if self.relu else self.out_qp.qmin
        return qmin, self.out_qp.qmax

    def extra_repr(self):
        w = self.w_info
        return (f"{self.shape_repr()}, relu={self.relu}\n  weight: {w['dtype']} {w['qscheme']} "
                f"{_describe(self.weight_scale, self.weight_zero_point)} ({w['observer']})\n"
                f"  input:  {self.in_qp}\n  output: {self.out_qp}{' -> QTensor' if self.output_quantized else ' -> float'}")


class QuantizedLinear(_QuantizedWeighted):
    def __init__(self, linear, w_scale, w_zp, w_info, in_qp, out_qp, relu=False, name=""):
        bias = None if linear.bias is None else linear.bias.data
        super().__init__(linear.weight.data, bias, w_scale, w_zp, w_info, in_qp, out_qp, relu, name)
        self.in_features = linear.in_features
        self._kernel()                  # pack the weight now; an int32 overflow is an error at convert time

    def shape_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"

    def forward(self, x):
        qx = self._input(x)
        if qx.shape[-1] != self.in_features:
            raise ValueError(f"{self.layer_name}: input has shape {qx.shape}, expected last dim {self.in_features}")
        q = self._kernel()(qx.reshape(-1, self.in_features))
        return self._output(q.reshape(qx.shape[:-1] + (self.out_features,)))


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _conv_padding(padding, kernel_size, name):
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        if any(k % 2 == 0 for k in kernel_size):
            raise ValueError(f"{name}: padding='same' with an even kernel {kernel_size} is not supported")
        return tuple(k // 2 for k in kernel_size)
    return _pair(padding)


class QuantizedConv2d(_QuantizedWeighted):
    def __init__(self, conv, w_scale, w_zp, w_info, in_qp, out_qp, relu=False, name=""):
        if getattr(conv, "groups", 1) != 1 or _pair(getattr(conv, "dilation", 1)) != (1, 1):
            raise ValueError(f"{name}: QuantizedConv2d supports groups=1, dilation=1 only")
        bias = None if conv.bias is None else conv.bias.data
        super().__init__(conv.weight.data, bias, w_scale, w_zp, w_info, in_qp, out_qp, relu, name)
        self.kernel_size = conv.weight.shape[2:]
        self.stride, self.padding = _pair(conv.stride), _conv_padding(conv.padding, self.kernel_size, name)
        self.in_channels = conv.weight.shape[1]
        self._kernel()                  # pack the weight now; an int32 overflow is an error at convert time

    def shape_repr(self):
        return (f"{self.in_channels}, {self.out_features}, kernel_size={tuple(self.kernel_size)}, "
                f"stride={self.stride}, padding={self.padding}")

    def forward(self, x):
        qx = self._input(x)
        if qx.ndim != 4 or qx.shape[1] != self.in_channels:
            raise ValueError(f"{self.layer_name}: input has shape {qx.shape}, expected (N, {self.in_channels}, H, W)")
        return self._output(self._kernel()(qx))

    def _build_kernel(self):
        qmin, qmax = self._out_range()
        return integer_ops.IntConv2d(self.weight_int, self.weight_zero_point, self.stride, self.padding,
                                     self.in_qp.zero_point, self.in_qp.qmin, self.in_qp.qmax, self.bias_int,
                                     self.multiplier_m0, self.multiplier_shift, self.out_qp.zero_point, qmin, qmax,
                                     self.layer_name)


class QuantizedAdd(Module):
    """Integer residual add; inputs float (quantized with their observed qparams) or QTensors."""

    def __init__(self, qp_a, qp_b, out_qp, name=""):
        super().__init__()
        self.qp_a, self.qp_b, self.out_qp, self.layer_name = qp_a, qp_b, out_qp, name

    def forward(self, x):
        raise RuntimeError("QuantizedAdd: call .add(a, b)")

    def add(self, a, b):
        qs = []
        for t, qp in ((a, self.qp_a), (b, self.qp_b)):
            qs.append((t.q, t.scale, t.zero_point) if isinstance(t, QTensor) else
                      (quantize(t.data if isinstance(t, Tensor) else t, qp.scale, qp.zero_point, qp.qmin, qp.qmax),
                       qp.scale, qp.zero_point))
        o = self.out_qp
        q = integer_ops.int_add(*qs[0], *qs[1], o.scale, o.zero_point, o.qmin, o.qmax)
        return QTensor(q, o.scale, o.zero_point, o.qmin, o.qmax).dequantize()

    def extra_repr(self):
        return f"a: {self.qp_a}\n  b: {self.qp_b}\n  output: {self.out_qp}"


# ---- modules that act on integer codes directly -------------------------------------------------------------
class QuantizedReLU(Module):
    def forward(self, x):
        if isinstance(x, QTensor):
            return x.with_q(np.maximum(x.q, np.asarray(x.zero_point).astype(x.q.dtype)))
        return x.relu()


class QuantizedFlatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        if isinstance(x, QTensor):
            nd = x.q.ndim
            s, e = self.start_dim % nd, self.end_dim % nd
            return x.with_q(x.q.reshape(x.q.shape[:s] + (-1,) + x.q.shape[e + 1:]))
        return x.flatten(self.start_dim, self.end_dim)


class QuantizedUnflatten(Module):
    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def _shape(self, shape):
        d = self.dim % len(shape)
        return shape[:d] + self.unflattened_size + shape[d + 1:]

    def forward(self, x):
        if isinstance(x, QTensor):
            return x.with_q(x.q.reshape(self._shape(x.q.shape)))
        return x.reshape(self._shape(tuple(x.shape)))


class QuantizedMaxPool2d(Module):
    """Max pooling on codes: max commutes with the increasing map q -> (q - z) s. Padding uses qmin (-inf)."""

    def __init__(self, pool):
        super().__init__()
        self.pool = pool
        self.kernel_size = _pair(pool.kernel_size)
        stride = getattr(pool, "stride", None)
        self.stride = _pair(stride) if stride is not None else self.kernel_size
        self.padding = _pair(getattr(pool, "padding", 0))

    def forward(self, x):
        if not isinstance(x, QTensor):
            return self.pool(x)
        q = x.q
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if ph or pw:
            q = np.pad(q, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=x.qmin)
        h, w = q.shape[2:]
        ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
        out = None                      # max over the kh * kw shifted, strided views: vectorised passes
        for i in range(kh):
            for j in range(kw):
                view = q[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                out = view.copy() if out is None else np.maximum(out, view, out=out)
        return x.with_q(out)


class QuantizedIdentity(Module):
    """Dropout in eval (and other identities) for QTensors."""

    def forward(self, x):
        return x


INTEGER_PASSTHROUGH = (QuantizedReLU, QuantizedFlatten, QuantizedUnflatten, QuantizedMaxPool2d, QuantizedIdentity)


# ---- dynamic quantization -------------------------------------------------------------------------------------
class DynamicQuantizedLinear(Module):
    """int8 per-channel weights; activations quantized per batch (or per row) at run time; float output."""

    def __init__(self, linear, w_scale, w_zp, w_info, per_row=False, act_bits=8, name="", relu=False):
        super().__init__()
        self.in_features, self.out_features = linear.weight.shape[1], linear.weight.shape[0]
        self.per_row, self.layer_name, self.w_info, self.relu = per_row, name, w_info, bool(relu)
        # per-tensor weights keep ONE scale and zero point (0-d arrays), per-channel weights one per row
        w_scale = np.asarray(w_scale, dtype=np.float32).copy()
        w_zp = np.asarray(w_zp, dtype=np.int64).astype(np.int8)
        axis = 0 if w_scale.ndim else None
        self.register_buffer("weight_int", quantize(linear.weight.data, w_scale, w_zp, w_info["qmin"],
                                                    w_info["qmax"], axis=axis))
        if self.weight_int.dtype != np.int8:
            raise ValueError(f"{name}: dynamic quantization takes weights of at most 8 bits, got {w_info['dtype']}")
        self.register_buffer("weight_scale", w_scale)
        self.register_buffer("weight_zero_point", w_zp)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.data.copy())
        self.act_qmin, self.act_qmax = qrange(act_bits, signed=False)
        self._kernel()                  # pack the weight now

    def _kernel(self):
        """This layer's integer_ops.DynamicIntLinear (weight packed once; cached outside the module)."""
        sources = (*self._buffers.values(), self.per_row, self.act_qmin, self.act_qmax, self.relu)
        return _cached_kernel(self, sources, lambda: integer_ops.DynamicIntLinear(
            self.weight_int, np.broadcast_to(self.weight_zero_point, (self.out_features,)),
            np.broadcast_to(self.weight_scale, (self.out_features,)), self.bias, self.per_row, self.act_qmin,
            self.act_qmax, self.layer_name, relu=self.relu))

    def forward(self, x):
        arr = x.data if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
        if arr.shape[-1] != self.in_features:
            raise ValueError(f"{self.layer_name}: input has shape {arr.shape}, expected last dim {self.in_features}")
        y = self._kernel()(arr.reshape(-1, self.in_features))
        return Tensor(y.reshape(arr.shape[:-1] + (self.out_features,)))

    def extra_repr(self):
        w = self.w_info
        return (f"in_features={self.in_features}, out_features={self.out_features}, relu={self.relu}, "
                f"weight: {w['dtype']} "
                f"{w['qscheme']} {_describe(self.weight_scale, self.weight_zero_point)}, activation: quint8 "
                f"dynamic per-{'row' if self.per_row else 'batch'}, output float")
