"""Hypothesis strategies shared by the test files: shapes, broadcastable pairs, float arrays."""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def shapes(min_dims=1, max_dims=3, min_side=1, max_side=5):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def arrays(shape, low=-3.0, high=3.0, dtype=np.float64):
    """Finite float arrays of `shape` (a shape or a strategy of shapes) with values in [low, high]."""
    return hnp.arrays(dtype, shape, elements=st.floats(low, high, allow_nan=False, allow_infinity=False,
                                                       width=64 if dtype == np.float64 else 32))


@st.composite
def broadcastable_pair(draw, max_dims=3, max_side=4):
    """Two shapes that broadcast together (including size-1 axes and missing leading axes)."""
    a, b = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=max_dims,
                                                  max_side=max_side)).input_shapes
    return a, b


def seeds():
    return st.integers(0, 2**31 - 1)


def away_from(values, points, margin):
    """Push array entries that are within `margin` of any of `points` away (kinks of relu, clip, abs)."""
    out = np.array(values, dtype=np.float64)
    for p in points:
        near = np.abs(out - p) < margin
        out[near] = p + np.where(out[near] >= p, margin, -margin) * 2
    return out


# ---- integer kernels (H3) ----------------------------------------------------------------------------------

@st.composite
def gemm_shapes(draw, max_m=40, max_n=70, max_k=8192):
    """(M, K, N) for integer GEMM tests: sizes that are not multiples of any tile (odd, prime, 1), and
    sometimes a large K (up to `max_k`) with M and N kept small so that the reference product stays cheap."""
    if draw(st.integers(0, 4)) == 0:
        k = draw(st.integers(1024, max_k))
        return draw(st.integers(1, 5)), k, draw(st.integers(1, 20))
    return draw(st.integers(1, max_m)), draw(st.integers(1, 300)), draw(st.integers(1, max_n))


def int_matrix(rng, shape, dtype):
    """Random integers covering the whole range of `dtype` (a NumPy Generator `rng`: tests pass their seed)."""
    info = np.iinfo(dtype)
    return rng.integers(int(info.min), int(info.max) + 1, size=shape, dtype=dtype)


def prune_weights(shape):
    """float32 weights for pruning tests (ties and zeros included: hypothesis shrinks towards them)."""
    return arrays(shape, -3.0, 3.0, dtype=np.float32)


# ---- layers: conv and pooling geometry (H1) ------------------------------------------------------------------

@st.composite
def conv_geometry(draw, max_side=6):
    """dict(x_shape, w_shape, stride, padding, dilation) for a small conv2d whose kernel fits the padded input
    (non-square kernels, strides, paddings and dilations; few elements, so gradchecks stay fast)."""
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    eff = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    h = draw(st.integers(max(1, eff[0] - 2 * padding[0]), max(max_side, eff[0])))
    w = draw(st.integers(max(1, eff[1] - 2 * padding[1]), max(max_side, eff[1])))
    return dict(x_shape=(n, c, h, w), w_shape=(o, c, kh, kw), stride=stride, padding=padding, dilation=dilation)


@st.composite
def pool_geometry(draw, max_side=7):
    """dict(x_shape, kernel_size, stride, padding, ceil_mode) obeying PyTorch's rule padding <= kernel / 2."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    h = draw(st.integers(max(1, kh - 2 * padding[0]), max_side))
    w = draw(st.integers(max(1, kw - 2 * padding[1]), max_side))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w)
    return dict(x_shape=shape, kernel_size=(kh, kw), stride=stride, padding=padding, ceil_mode=draw(st.booleans()))


# ---- quantization (tests/test_quant_*.py) ---------------------------------------------------------------
@st.composite
def qrange_args(draw, min_bits=2, max_bits=16):
    """(bits, signed, reduce_range, narrow_range) that leave at least two levels."""
    bits = draw(st.integers(min_bits, max_bits))
    signed, reduce_range, narrow = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    if bits - reduce_range <= 2 and narrow:
        narrow = False
    if bits - reduce_range < 2:
        reduce_range = False
    return bits, signed, reduce_range, narrow


@st.composite
def float_ranges(draw, n=None, low=-100.0, high=100.0):
    """(min_val, max_val) with min <= max: scalars, or 1-D arrays of length n (per-channel)."""
    size = () if n is None else (n,)
    a = draw(arrays(size, low, high, dtype=np.float32))
    b = draw(arrays(size, low, high, dtype=np.float32))
    return np.minimum(a, b), np.maximum(a, b)


def seeded_mlp():
    """The zoo's MLP architecture with the weights of seed 0, in eval mode (untrained: for size / format tests)."""
    import minicompress as mc
    mc.manual_seed(0)
    return mc.models.mlp().eval()
