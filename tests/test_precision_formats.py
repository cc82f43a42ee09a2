"""BF16 / FP16 / FP8 rounding against independent references: exhaustive integer arithmetic for BF16,
brute-force nearest-value search over all 256 codes for FP8, the generic e/m rounding for FP16, plus
hypothesis properties (monotone, idempotent, error bound)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from minicompress import precision as P

LOWER_HALVES = (0x0000, 0x7FFF, 0x8000, 0x8001, 0xFFFF)


def all_bf16_boundary_patterns():
    upper = np.arange(1 << 16, dtype=np.int64)
    return np.concatenate([(upper << 16) | low for low in LOWER_HALVES])   # 327,680 float32 bit patterns


def reference_bf16_bits(u):
    """Round-to-nearest-even on the lower half, written as comparisons on Python-sized integers."""
    upper, lower = u >> 16, u & 0xFFFF
    is_nan = (((u >> 23) & 0xFF) == 0xFF) & ((u & 0x7FFFFF) != 0)
    round_up = (lower > 0x8000) | ((lower == 0x8000) & ((upper & 1) == 1))
    return np.where(is_nan, upper | 0x0040, upper + round_up)


def test_bf16_bits_match_integer_reference_for_every_upper_half_and_boundary_lower_half():
    u = all_bf16_boundary_patterns()
    x = u.astype(np.uint32).view(np.float32)
    expected = reference_bf16_bits(u)
    assert expected.max() <= 0xFFFF                      # no carry into a 17th bit
    got = P.bf16_bits(x)
    assert got.dtype == np.uint16 and got.shape == x.shape
    np.testing.assert_array_equal(got.astype(np.int64), expected)
    rounded = P.round_to_bf16(x)
    assert rounded.dtype == np.float32
    np.testing.assert_array_equal(rounded.view(np.uint32).astype(np.int64), expected << 16)
    nan = np.isnan(x)
    assert np.isnan(rounded[nan]).all() and not np.isnan(rounded[~nan]).any()


def test_bf16_float32_bit_trick_agrees_with_generic_float64_rounding():
    u = all_bf16_boundary_patterns()
    x = u.astype(np.uint32).view(np.float32)
    finite = np.isfinite(x)
    generic = P.round_to_format(x[finite].astype(np.float64), 8, 7, P.BF16_MAX, overflow="inf")
    np.testing.assert_array_equal(P.round_to_bf16(x[finite]).astype(np.float64), generic)
    # float64 input rounds once (no double rounding through float32): just above a tie goes up
    above_tie = 1.0 + 2.0 ** -8 + 2.0 ** -40
    assert np.float32(above_tie) == np.float32(1.0 + 2.0 ** -8)   # float32 would land exactly on the tie
    assert P.round_to_bf16(np.float64(above_tie)) == np.float32(1.0 + 2.0 ** -7)


def test_bf16_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45, 3.4e38, -3.4e38, 1.0, -2.5], dtype=np.float32)
    r = P.round_to_bf16(x)
    np.testing.assert_array_equal(np.signbit(r[:2]), [False, True])
    assert r[2] == np.inf and r[3] == -np.inf
    assert r[4] == 0 and not np.signbit(r[4]) and r[5] == 0 and np.signbit(r[5])   # tiny subnormal -> ±0
    assert r[6] == np.inf and r[7] == -np.inf        # beyond BF16_MAX + half an ulp: RNE overflows to inf
    np.testing.assert_array_equal(r[8:], x[8:])
    nan_low_payload = np.array([0x7F800001, 0xFF800001], dtype=np.uint32).view(np.float32)
    assert np.isnan(P.round_to_bf16(nan_low_payload)).all()    # truncation alone would give ±inf
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    values = P.from_bf16_bits(bits)
    finite = np.isfinite(values)
    np.testing.assert_array_equal(P.bf16_bits(values[finite]), bits[finite])   # exact round trip
    with pytest.raises(TypeError, match="uint16"):
        P.from_bf16_bits(np.array([1, 2], dtype=np.int32))


finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@given(hnp.arrays(np.float32, st.integers(2, 50), elements=finite32))
def test_rounding_is_monotone_and_idempotent(x):
    x = np.sort(x)
    for fn in (P.round_to_bf16, P.round_to_fp16, lambda v: P.round_to_fp8(v, "e4m3"),
               lambda v: P.round_to_fp8(v, "e5m2"), lambda v: P.round_to_fp8(v, "e5m2", saturate=False)):
        r = fn(x)
        assert (r[1:] >= r[:-1]).all()
        np.testing.assert_array_equal(fn(r), r)


@given(hnp.arrays(np.float32, st.integers(1, 50), elements=st.floats(2.0 ** -100, 2.0 ** 100, width=32)), st.booleans())
def test_bf16_relative_error_is_at_most_half_an_ulp(x, negate):
    x = -x if negate else x
    r = P.round_to_bf16(x).astype(np.float64)
    assert (np.abs(r - x) <= 2.0 ** -8 * np.abs(x)).all()


@given(hnp.arrays(np.float32, st.integers(1, 50), elements=st.floats(-1e6, 1e6, width=32)))
def test_fp16_numpy_cast_agrees_with_generic_rounding(x):
    generic = P.round_to_format(x.astype(np.float64), 5, 10, P.FP16_MAX, overflow="inf")
    np.testing.assert_array_equal(P.round_to_fp16(x).astype(np.float64), generic)
    np.testing.assert_array_equal(P.from_fp16_bits(P.fp16_bits(x)), P.round_to_fp16(x))


# ---- FP8: an independent decoder and a brute-force nearest search --------------------------------
FORMATS = {"e4m3": dict(e=4, m=3, bias=7, ieee=False), "e5m2": dict(e=5, m=2, bias=15, ieee=True)}


def decode(code, fmt):
    f = FORMATS[fmt]
    sign = -1.0 if code & 0x80 else 1.0
    exponent, mantissa = (code >> f["m"]) & ((1 << f["e"]) - 1), code & ((1 << f["m"]) - 1)
    top = exponent == (1 << f["e"]) - 1
    if f["ieee"] and top:
        return sign * np.inf if mantissa == 0 else np.nan
    if not f["ieee"] and top and mantissa == (1 << f["m"]) - 1:
        return np.nan
    if exponent == 0:
        return sign * mantissa * 2.0 ** (1 - f["bias"] - f["m"])
    return sign * ((1 << f["m"]) + mantissa) * 2.0 ** (exponent - f["bias"] - f["m"])


def nearest_even(x, fmt, saturate):
    """Brute force over the non-negative codes, plus the value one step above the largest (its overflow)."""
    codes = [c for c in range(128) if np.isfinite(decode(c, fmt))]
    values = [decode(c, fmt) for c in codes]
    top = max(values)
    step = top - decode(codes[-2], fmt)
    if np.isnan(x):
        return np.nan
    mag = min(abs(x), top) if saturate else abs(x)
    if np.isinf(mag):
        return x if FORMATS[fmt]["ieee"] else np.nan
    candidates = list(zip(values, codes)) + ([] if saturate else [(top + step, codes[-1] + 1)])
    best = min(candidates, key=lambda vc: (abs(vc[0] - mag), vc[1] & 1))     # nearest; ties: even code
    if best[0] > top:                                                        # rounded past the largest value
        return np.inf * np.sign(x) if FORMATS[fmt]["ieee"] else np.nan
    return np.copysign(best[0], x)


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_fp8_decode_table_matches_independent_decoder(fmt):
    table = P.fp8_values(fmt)
    expected = np.array([decode(c, fmt) for c in range(256)], dtype=np.float32)
    np.testing.assert_array_equal(table, expected)                     # NaN positions compare equal
    assert np.nanmax(table[np.isfinite(table)]) == {"e4m3": 448.0, "e5m2": 57344.0}[fmt]
    codes = np.arange(256, dtype=np.uint8)
    ok = ~np.isnan(table)
    np.testing.assert_array_equal(P.fp8_bits(table[ok], fmt, saturate=False), codes[ok])
    np.testing.assert_array_equal(P.from_fp8_bits(codes, fmt), table)


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
@pytest.mark.parametrize("saturate", [True, False])
def test_fp8_rounding_matches_brute_force_at_every_midpoint(fmt, saturate):
    values = np.array(sorted({abs(v) for v in (decode(c, fmt) for c in range(128)) if np.isfinite(v)}))
    mids = (values[:-1] + values[1:]) / 2
    top_step = values[-1] - values[-2]
    probes = np.concatenate([values, mids, mids * (1 + 1e-6), mids * (1 - 1e-6),
                             [values[-1] + top_step / 2, values[-1] + top_step / 2 * (1 + 1e-6),
                              values[-1] * 4, np.inf, np.nan, 1e-30]])
    probes = np.concatenate([probes, -probes])
    got = P.round_to_fp8(probes, fmt, saturate=saturate)
    expected = np.array([nearest_even(v, fmt, saturate) for v in probes], dtype=np.float32)
    if saturate:   # satfinite: ±inf -> ±max as well
        expected = np.where(np.isinf(probes), np.sign(probes) * values[-1], expected).astype(np.float32)
    np.testing.assert_array_equal(got, expected)
    real = ~np.isnan(expected)
    np.testing.assert_array_equal(np.signbit(got[real]), np.signbit(expected[real]))   # ±0 keep their sign


@given(st.sampled_from(["e4m3", "e5m2"]), st.booleans(),
       hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(-1e5, 1e5)))
def test_fp8_rounding_matches_brute_force_on_random_values(fmt, saturate, x):
    got = P.round_to_fp8(x, fmt, saturate=saturate)
    expected = np.array([nearest_even(v, fmt, saturate) for v in x], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(P.from_fp8_bits(P.fp8_bits(x, fmt, saturate), fmt), got)


def test_fp8_bad_format_is_a_clear_error():
    with pytest.raises(ValueError, match="e4m3"):
        P.round_to_fp8(np.ones(3), fmt="e3m4")
    with pytest.raises(ValueError, match="overflow"):
        P.round_to_format(np.ones(3), 4, 3, 448.0, overflow="wrap")
