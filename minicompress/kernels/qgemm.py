"""Fast quantized GEMM entry points: packed weights, uint8 activations, fused epilogues, run-time dispatch.

    gemm_u8s8s32(a, packed, a_zero_point=0, *, bias_int32=None, relu=False, path=None) -> int32 [M, N]
        sum_k (a[m, k] - za) (w[n, k] - zw[n]) + bias[n]          a uint8 [M, K] (or int8: shifted by 128)
    qlinear(x_q, x_zero_point, packed, m0, shift, out_zero_point, *, bias_int32=None, relu=False,
            out_dtype=np.uint8, path=None) -> out_dtype [M, N]
        static integer-only Linear (Jacob et al. 2018): GEMM + bias + fixed-point requantization (+ ReLU
        folded into the clamp: qmin = max(qmin, out_zero_point)) in one pass over the output
    qlinear_dynamic(x, packed, bias=None, *, per_row=False, reduce_range=False, relu=False, path=None)
        -> float32 [M, N]: quantize x to uint8 at run time, GEMM, dequantize + float bias (+ ReLU) fused
    qconv2d(x_q, x_zero_point, packed, kernel_size, m0, shift, out_zero_point, *, stride=1, padding=0,
            bias_int32=None, relu=False, out_dtype=np.uint8, output="requant", path=None) -> [N, O, OH, OW]
        integer Conv2d: im2col (padded with the input zero point) + the same GEMM and epilogue
    gemm_s8s8s32_packed(a int8, b int8) -> int32: the s8 x s8 product through the u8 x s8 kernels
        (a + 128 is uint8; subtract 128 * colsum(b)): how `gemm_s8s8s32` uses VNNI

`packed` is a `PackedWeight` from `pack_weight(w_int8 [N, K], scale, zero_point)` (packing.py), built once.
`path`: None = the fastest exact kernel of this CPU (kernels.cpu.kernel_path()), or "vnni" / "portable". The
functions resolve it at every call; the layer objects (QLinear, DynamicQLinear) once, when they are built
(reading the environment costs ~1 us, as much as a small layer's epilogue).
`rounding` (requantizing outputs): "gemmlowp" (two roundings, as Jacob et al.'s reference code) or
"half_even" (one rounding of the exact product acc * m0 / 2^(31 + shift), as np.rint: what mc.quant uses).
`parallel`: None = the worker threads only when M * N_pad * K_pad >= PARALLEL_MIN_MACS (below that, starting
the threads -- or waiting for a free core on a busy machine -- costs more than the product), an int = that
threshold instead, or True / False. With one Numba thread (NUMBA_NUM_THREADS=1) the one-thread drivers run.
"""
import numba
import numpy as np

from .checks import MAX_K_U8S8, check_array, check_inner_dims
from .cpu import cpu_has_vnni, kernel_path
from .dynamic_quant import PARALLEL_MIN_ELEMENTS as DYNAMIC_PARALLEL_MIN_ELEMENTS
from .dynamic_quant import quantize_dynamic_u8
from .epilogue import epilogue_columns, epilogue_rows, make_epilogue, per_tensor_columns
from .im2col import as_pair, im2col_u8
from .packing import GROUP, PackedWeight, pack_b
from .u8s8 import dynamic_linear_portable_serial, gemm_packed_portable, gemm_packed_portable_serial

_DUMMY_I32 = np.zeros((1, 1), np.int32)
_DUMMY_U8 = np.zeros((1, 1), np.uint8)
_DUMMY_F32 = np.zeros((1, 1), np.float32)


def resolve_path(path):
    if path is None:
        return kernel_path()
    if path not in ("vnni", "portable"):
        raise ValueError(f"path must be None, 'vnni' or 'portable', got {path!r}")
    if path == "vnni" and not cpu_has_vnni():
        raise ValueError("path='vnni' needs a CPU with AVX-512 VNNI (this one has none); use path='portable'")
    return path


_VNNI_KERNEL = {}      # filled on first use: vnni.py is imported only where it can compile
PARALLEL_MIN_MACS = 1 << 26


def _kernel(path, parallel=True, kind="gemm"):
    """The driver for `path`: kind="gemm" (threaded or serial GEMM) or "dynamic_linear" (serial, one call)."""
    if resolve_path(path) == "vnni":
        if not _VNNI_KERNEL:
            from .vnni import dynamic_linear_vnni_serial, gemm_packed_vnni, gemm_packed_vnni_serial
            _VNNI_KERNEL.update(gemm=gemm_packed_vnni, gemm_serial=gemm_packed_vnni_serial,
                                dynamic_linear=dynamic_linear_vnni_serial)
        return _VNNI_KERNEL[kind if kind == "dynamic_linear" else ("gemm" if parallel else "gemm_serial")]
    if kind == "dynamic_linear":
        return dynamic_linear_portable_serial
    return gemm_packed_portable if parallel else gemm_packed_portable_serial


def use_parallel(m_size, packed, parallel=None):
    """parallel=None: the threaded driver for products of at least PARALLEL_MIN_MACS multiply-adds; an int:
    that many MACs instead; True / False: forced. Never (unless forced) when Numba runs one thread
    (NUMBA_NUM_THREADS=1 or numba.set_num_threads(1): what to do on a shared, busy machine)."""
    if parallel is None or (isinstance(parallel, (int, np.integer)) and not isinstance(parallel, bool)):
        threshold = PARALLEL_MIN_MACS if parallel is None else int(parallel)
        return m_size * packed.n_padded * packed.k_padded >= threshold and numba.get_num_threads() > 1
    return bool(parallel)


def check_packed(packed, name="packed"):
    if not isinstance(packed, PackedWeight):
        raise TypeError(f"{name} must be a PackedWeight (from kernels.pack_weight), got {type(packed).__name__}")


def prepare_activation(a, packed, a_zero_point, name="a"):
    """uint8 / int8 [M, K] -> (uint8 rows padded to K_pad, flattened; row stride; zero point(s) for uint8).

    int8 is mapped to uint8 by a + 128 (x ^ 0x80), with its zero point moved by +128: same differences."""
    check_packed(packed)
    if not isinstance(a, np.ndarray) or a.dtype not in (np.uint8, np.int8):
        got = a.dtype.name if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{name} must be a uint8 (or int8) numpy array, got {got}")
    check_array(name, a, a.dtype, ndim=2)
    check_inner_dims(name, a.shape, "the packed weight", packed.k)
    za = np.asarray(a_zero_point, dtype=np.int64)
    if not np.issubdtype(np.asarray(a_zero_point).dtype, np.integer):
        raise TypeError(f"{name}_zero_point must be an integer (or integer array), got {a_zero_point!r}")
    if a.dtype == np.int8:
        a = a.view(np.uint8) ^ np.uint8(0x80)
        za = za + 128
    if np.any(za < 0) or np.any(za > 255):
        raise ValueError(f"{name}_zero_point must lie in the activation's range, got {a_zero_point!r}")
    if a.shape[1] != packed.k_padded:
        padded = np.zeros((a.shape[0], packed.k_padded), np.uint8)
        padded[:, :a.shape[1]] = a
        a = padded
    return a, za


def _row_sums(a_u8, packed):
    if packed.has_zero_point:
        return a_u8.sum(axis=1, dtype=np.int64)
    return None


def _run(a_u8, packed, ep, output, path, parallel=None):
    m_size = a_u8.shape[0]
    out_i32 = np.empty((m_size, packed.n), np.int32) if output == "int32" else _DUMMY_I32
    out_u8 = np.empty((m_size, packed.n), np.uint8) if output == "requant" else _DUMMY_U8
    out_f32 = np.empty((m_size, packed.n), np.float32) if output == "float" else _DUMMY_F32
    if m_size:
        kernel = _kernel(path, use_parallel(m_size, packed, parallel))
        kernel(a_u8.reshape(-1), a_u8.shape[1], m_size, packed.data.reshape(-1), packed.n,
               packed.k_padded // GROUP, ep, out_i32, out_u8, out_f32)
    return {"int32": out_i32, "requant": out_u8, "float": out_f32}[output]


def gemm_u8s8s32(a, packed, a_zero_point=0, *, bias_int32=None, relu=False, path=None, parallel=None):
    """Exact sum_k (a - za)(w - zw) (+ bias) as int32 [M, N]; a uint8 (or int8) [M, K], packed weight [N, K]."""
    a_u8, za = prepare_activation(a, packed, a_zero_point)
    ep = make_epilogue(a_u8.shape[0], packed, za, _row_sums(a_u8, packed), output="int32",
                       bias_int32=bias_int32, relu=relu)
    return _run(a_u8, packed, ep, "int32", path, parallel)


class QLinear:
    """Static integer-only Linear on a packed weight; every per-layer parameter prepared once (convert time).

        layer = QLinear(packed, x_zero_point, m0, shift, out_zero_point, bias_int32=None, relu=False,
                        out_dtype=np.uint8, path=None)
        y_q = layer(x_q)     # x_q uint8 (or int8) [M, K] -> out_dtype [M, N]
    y_q = clamp(requantize(sum (x - zx)(w - zw) + bias, m0, shift) + z_out, qmin, qmax), where m0, shift =
    quantize_multiplier(s_x * s_w / s_out) (scalars or per output channel); relu clamps at z_out (real 0).
    qmin / qmax (optional) narrow the output clamp inside out_dtype's range (e.g. 4-bit codes in uint8).
    The per-call half of the epilogue is cached per batch size M (it depends only on M when the weight has no
    zero point), so a call is: checks, one kernel, no other pass over the data."""

    def __init__(self, packed, x_zero_point, m0, shift, out_zero_point, bias_int32=None, relu=False,
                 out_dtype=np.uint8, path=None, *, rounding="gemmlowp", qmin=None, qmax=None, parallel=None):
        check_packed(packed)
        self.packed, self.path, self.parallel = packed, resolve_path(path), parallel
        self.out_dtype = np.dtype(out_dtype)
        if self.out_dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
            raise TypeError(f"out_dtype must be uint8 or int8, got {self.out_dtype.name}")
        info = np.iinfo(self.out_dtype)
        if not info.min <= int(out_zero_point) <= info.max:
            raise ValueError(f"out_zero_point={out_zero_point} is outside the {self.out_dtype.name} range")
        if not np.issubdtype(np.asarray(x_zero_point).dtype, np.integer) or np.ndim(x_zero_point) != 0:
            raise TypeError(f"x_zero_point must be one integer, got {x_zero_point!r}")
        self.x_zero_point = int(x_zero_point)
        qmin, qmax = _output_range(info, qmin, qmax)
        qmin = max(qmin, int(out_zero_point)) if relu else qmin
        self.columns = epilogue_columns(packed, output="requant", bias_int32=bias_int32, m0=m0, shift=shift,
                                        out_zero_point=int(out_zero_point), qmin=qmin, qmax=qmax,
                                        rounding=rounding)
        self._rows = {}                 # M -> the per-call half of the epilogue (no weight zero point only)
        self._fast_u8 = packed.k == packed.k_padded and 0 <= self.x_zero_point <= 255

    def __call__(self, x_q):
        if (type(x_q) is np.ndarray and x_q.dtype == np.uint8 and x_q.ndim == 2 and self._fast_u8
                and x_q.shape[1] == self.packed.k and x_q.flags.c_contiguous):
            return self._finish(x_q, self.x_zero_point, "B")        # already what the kernel reads
        a_u8, za = prepare_activation(x_q, self.packed, self.x_zero_point, name="x_q")
        return self._finish(a_u8, za, x_q.dtype.char)

    def run_rows(self, a_u8):
        """The same on uint8 rows already padded with zeros to packed.k_padded (im2col_u8's output)."""
        check_array("a_u8", a_u8, np.uint8, ndim=2)
        if a_u8.shape[1] != self.packed.k_padded or not 0 <= self.x_zero_point <= 255:
            raise ValueError(f"run_rows takes uint8 rows of width k_padded={self.packed.k_padded} (and a uint8 "
                             f"zero point), got shape {a_u8.shape}, x_zero_point={self.x_zero_point}")
        return self._finish(a_u8, self.x_zero_point, "B")

    def _finish(self, a_u8, za, dtype_char):
        key = (a_u8.shape[0], dtype_char)               # int8 input moves the zero point by 128
        ep = self._rows.get(key) if not self.packed.has_zero_point else None
        if ep is None:
            ep = epilogue_rows(self.columns, key[0], za, _row_sums(a_u8, self.packed))
            if not self.packed.has_zero_point:
                if len(self._rows) >= 8:
                    self._rows.clear()
                self._rows[key] = ep
        out = _run(a_u8, self.packed, ep, "requant", self.path, self.parallel)
        return out.view(np.int8) if self.out_dtype == np.int8 else out


def _output_range(info, qmin, qmax):
    """The output clamp: out_dtype's range, or [qmin, qmax] inside it."""
    qmin = info.min if qmin is None else int(qmin)
    qmax = info.max if qmax is None else int(qmax)
    if not info.min <= qmin <= qmax <= info.max:
        raise ValueError(f"qmin={qmin}, qmax={qmax} must satisfy {info.min} <= qmin <= qmax <= {info.max}")
    return qmin, qmax


class DynamicQLinear:
    """Dynamically quantized Linear: float32 x [M, K] -> float32 [M, N] = dequant(GEMM(quant(x), W)) + bias.

        layer = DynamicQLinear(packed, bias=None, per_row=False, reduce_range=False, relu=False, path=None)
        y = layer(x)
    x is quantized to uint8 at every call (per tensor, or per row), the weight was packed once with its
    scale(s); the dequantization, the float bias and ReLU are fused into the GEMM's epilogue. The common small
    case -- per tensor, symmetric weight, a product too small for threads -- is one Numba call
    (dynamic_linear_*_serial: quantize, GEMM, epilogue), because on layers of a few million multiply-adds the
    Python steps between the three cost as much as the arithmetic."""

    def __init__(self, packed, bias=None, per_row=False, reduce_range=False, relu=False, path=None, *,
                 parallel=None):
        check_packed(packed)
        self.parallel = parallel
        if packed.scale is None:
            raise ValueError("a dynamic quantized Linear needs a PackedWeight with a scale: pack_weight(w_q, scale=)")
        self.packed, self.per_row, self.reduce_range = packed, bool(per_row), bool(reduce_range)
        self.path = resolve_path(path)
        self.columns = epilogue_columns(packed, output="float", bias_float=bias, relu=relu)
        self._one_call = None if per_row or self.columns["weight_zero_point"] else per_tensor_columns(self.columns)
        self._packed_flat = packed.data.reshape(-1)
        self._qmax = np.int64(127 if self.reduce_range else 255)

    def __call__(self, x):
        check_array("x", x, np.float32, ndim=2)
        check_inner_dims("x", x.shape, "the packed weight", self.packed.k)
        m_size = x.shape[0]
        if m_size == 0:
            return np.empty((0, self.packed.n), np.float32)
        if (self._one_call is not None and x.size < DYNAMIC_PARALLEL_MIN_ELEMENTS
                and not use_parallel(m_size, self.packed, self.parallel)):
            out = np.empty((m_size, self.packed.n), np.float32)
            if not _kernel(self.path, kind="dynamic_linear")(x, self._qmax, self._packed_flat, self.packed.n,
                                                             self.packed.k_padded // GROUP, self._one_call, out):
                raise ValueError("x contains NaN or inf: dynamic quantization needs finite activations")
            return out
        q, scale, zp = quantize_dynamic_u8(x, per_row=self.per_row, reduce_range=self.reduce_range,
                                           k_padded=self.packed.k_padded)
        row_sums = q.sum(axis=1, dtype=np.int64) if self.columns["weight_zero_point"] else None
        ep = epilogue_rows(self.columns, m_size, zp if self.per_row else int(zp[0]), row_sums, scale)
        return _run(q, self.packed, ep, "float", self.path, self.parallel)


def qlinear(x_q, x_zero_point, packed, m0, shift, out_zero_point, *, bias_int32=None, relu=False,
            out_dtype=np.uint8, path=None):
    """Static quantized Linear, one call (see QLinear: build that once per layer to skip the set-up)."""
    return QLinear(packed, x_zero_point, m0, shift, out_zero_point, bias_int32, relu, out_dtype, path)(x_q)


def qlinear_dynamic(x, packed, bias=None, *, per_row=False, reduce_range=False, relu=False, path=None):
    """Dynamic quantized Linear, one call (see DynamicQLinear: build that once per layer)."""
    return DynamicQLinear(packed, bias, per_row, reduce_range, relu, path)(x)


def gemm_s8s8s32_packed(a, b, path=None):
    """Exact int8 [M, K] x int8 [K, N] -> int32 via the packed u8 x s8 kernels (K <= 65793)."""
    check_array("a", a, np.int8, ndim=2)
    check_array("b", b, np.int8, ndim=2)
    check_inner_dims("a", a.shape, "b", b.shape[0])
    if a.shape[1] > MAX_K_U8S8:
        raise ValueError(f"K={a.shape[1]} > {MAX_K_U8S8}: too large for the u8 x s8 kernels")
    return gemm_u8s8s32(a, pack_b(b), 0, path=path)


def qconv2d(x_q, x_zero_point, packed, kernel_size, m0, shift, out_zero_point, *, stride=1, padding=0,
            bias_int32=None, relu=False, out_dtype=np.uint8, output="requant", path=None, rounding="gemmlowp",
            qmin=None, qmax=None, parallel=None):
    """Static quantized Conv2d (groups=1, dilation=1) through im2col and the packed GEMM.

    x_q uint8 / int8 [N, C, H, W]; packed = pack_weight(w_q.reshape(O, C*kh*kw)); padding uses the input
    zero point (real 0.0). output="requant" -> out_dtype [N, O, OH, OW] (as qlinear);
    output="int32" -> the exact int32 accumulators (+ bias) [N, O, OH, OW] (m0 / shift ignored)."""
    check_packed(packed)
    if not isinstance(x_q, np.ndarray) or x_q.dtype not in (np.uint8, np.int8):
        got = x_q.dtype.name if isinstance(x_q, np.ndarray) else type(x_q).__name__
        raise TypeError(f"x_q must be a uint8 (or int8) numpy array, got {got}")
    check_array("x_q", x_q, x_q.dtype, ndim=4)
    if not np.issubdtype(np.asarray(x_zero_point).dtype, np.integer) or np.ndim(x_zero_point) != 0:
        raise TypeError(f"x_zero_point must be one integer (per-tensor activation), got {x_zero_point!r}")
    za = int(x_zero_point)
    if x_q.dtype == np.int8:
        x_q, za = x_q.view(np.uint8) ^ np.uint8(0x80), za + 128
    if not 0 <= za <= 255:
        raise ValueError(f"x_zero_point={x_zero_point} is outside the activation's range")
    kh, kw = as_pair(kernel_size, "kernel_size")
    channels = x_q.shape[1]
    if channels * kh * kw != packed.k:
        raise ValueError(f"the packed weight has in_features={packed.k} but the input has C*kh*kw = "
                         f"{channels}*{kh}*{kw} = {channels * kh * kw}")
    cols, out_h, out_w = im2col_u8(x_q, (kh, kw), stride, padding, pad_value=za, k_padded=packed.k_padded)
    if output == "int32":
        ep = make_epilogue(cols.shape[0], packed, za, _row_sums(cols, packed), output="int32",
                           bias_int32=bias_int32, relu=relu)
        flat = _run(cols, packed, ep, "int32", path, parallel)
    elif output == "requant":
        out_dtype = np.dtype(out_dtype)
        if out_dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
            raise TypeError(f"out_dtype must be uint8 or int8, got {out_dtype.name}")
        info = np.iinfo(out_dtype)
        if not info.min <= int(out_zero_point) <= info.max:
            raise ValueError(f"out_zero_point={out_zero_point} is outside the {out_dtype.name} range")
        qmin, qmax = _output_range(info, qmin, qmax)
        qmin = max(qmin, int(out_zero_point)) if relu else qmin
        ep = make_epilogue(cols.shape[0], packed, za, _row_sums(cols, packed), output="requant",
                           bias_int32=bias_int32, m0=m0, shift=shift, out_zero_point=int(out_zero_point),
                           qmin=qmin, qmax=qmax, rounding=rounding)
        flat = _run(cols, packed, ep, "requant", path, parallel)
        flat = flat.view(np.int8) if out_dtype == np.int8 else flat
    else:
        raise ValueError(f"output must be 'requant' or 'int32', got {output!r}")
    batch = x_q.shape[0]
    return np.ascontiguousarray(flat.reshape(batch, out_h, out_w, packed.n).transpose(0, 3, 1, 2))


def gemm_u8s8s32_reference(a, weight, a_zero_point=0, weight_zero_point=0, bias_int32=None):
    """NumPy twin of gemm_u8s8s32 on the unpacked int8 weight [N, K]: int64 arithmetic, then int32."""
    za = np.asarray(a_zero_point, np.int64)
    za = za[:, None] if za.ndim else za
    zw = np.asarray(weight_zero_point, np.int64)
    acc = (a.astype(np.int64) - za) @ (weight.astype(np.int64) - (zw[:, None] if zw.ndim else zw)).T
    if bias_int32 is not None:
        acc = acc + np.asarray(bias_int32, np.int64)
    return np.clip(acc, -(2**31), 2**31 - 1).astype(np.int32)
