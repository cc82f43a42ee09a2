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
