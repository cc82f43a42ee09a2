"""Input checks shared by the kernels: a kernel must never see an array it cannot handle.

Numba kernels index raw memory: a float array, a strided view or a mismatched K would give a wrong answer
or a crash instead of an error. Every public entry point therefore calls these checks first, and each check
raises a `TypeError` (wrong kind of object / dtype) or `ValueError` (wrong shape / layout) whose message names
the argument, what it got and what was expected.
"""
import numpy as np

# int8 x int8 products are at most 128 * 128 = 2^14 in magnitude, so K products fit int32 while
# K * 2^14 <= 2^31 - 1, i.e. K <= 131071. u8 x s8 products are at most 255 * 128 < 2^15: K <= 65793.
MAX_K_S8S8 = (2**31 - 1) // (128 * 128)
MAX_K_U8S8 = (2**31 - 1) // (255 * 128)


def check_array(name, x, dtype, ndim=None, contiguous=True):
    """`x` must be a NumPy array of exactly `dtype` (and `ndim` dimensions, C-contiguous)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of dtype {np.dtype(dtype).name}, got {type(x).__name__}")
    if x.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {x.dtype.name}"
                        f" (convert explicitly, e.g. quantize first; kernels never cast silently)")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if contiguous and not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (got a strided view of shape {x.shape}); "
                         f"pass np.ascontiguousarray({name})")
    return x


def check_inner_dims(a_name, a_shape, b_name, b_k):
    """The inner dimensions of a product must agree: a is [M, K], b has K rows."""
    if a_shape[1] != b_k:
        raise ValueError(f"inner dimensions do not match: {a_name} has shape {tuple(a_shape)} (K={a_shape[1]}) "
                         f"but {b_name} has K={b_k}")


def check_k_fits_int32(k, max_k, what):
    """Refuse a K whose worst-case sum of products could overflow the int32 accumulator."""
    if k > max_k:
        raise ValueError(f"K={k} is too large for exact int32 accumulation of {what} products "
                         f"(worst case overflows int32 for K > {max_k}); split K and add the partial sums in int64")


def check_vector(name, x, length, dtype):
    """A per-channel parameter: a 1-D array of `length` entries, cast to `dtype`, or a scalar broadcast."""
    arr = np.asarray(x)
    if arr.ndim == 0:
        return np.full(length, arr, dtype=dtype)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(f"{name} must be a scalar or a 1-D array of length {length}, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=dtype)
