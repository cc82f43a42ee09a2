"""N:M weights stored compressed (prune.NMSparseLinear): the position packing against a field-by-field
reference written here, the exact round trip of the weight, the product against x W^T + b, the byte count
formula, clear errors, and a compressed zoo MLP that saves and loads bit for bit."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
from minicompress import nn
from minicompress.prune.nm_linear import NMSparseLinear, pack_positions, position_bits, unpack_positions


def reference_pack(positions, bits):
    """Byte k holds fields k*per .. k*per + per - 1, the first in the lowest bits (Python ints)."""
    per = 8 // bits
    flat = [int(p) for p in np.asarray(positions).reshape(-1)]
    flat += [0] * (-len(flat) % per)
    return np.array([sum(flat[k + j] << (bits * j) for j in range(per)) for k in range(0, len(flat), per)],
                    np.uint8)


@given(st.sampled_from([1, 2, 4, 8]), st.integers(0, 40), st.integers(0, 2**32 - 1))
def test_positions_pack_low_bits_first_and_unpack_back(bits, count, seed):
    positions = np.random.default_rng(seed).integers(0, 1 << bits, count).astype(np.uint8)
    packed = pack_positions(positions, bits)
    assert packed.dtype == np.uint8 and packed.size == -(-count * bits // 8)
    np.testing.assert_array_equal(packed, reference_pack(positions, bits))
    np.testing.assert_array_equal(unpack_positions(packed, bits, count), positions)


def test_position_bits_fit_the_group_and_divide_a_byte():
    assert [position_bits(m) for m in (2, 3, 4, 5, 8, 9, 16, 17, 256)] == [1, 2, 2, 4, 4, 4, 4, 8, 8]
    with pytest.raises(ValueError, match="m = 2 .. 256"):
        position_bits(257)
    with pytest.raises(ValueError, match=r"positions must lie in \[0, 3\] for 2 bits"):
        pack_positions(np.array([0, 4]), 2)


def nm_sparse_linear(rng, out, groups, n, m, bias=True):
    """A Linear whose weight keeps n random entries of every m (some of them exactly 0 as well)."""
    layer = nn.Linear(groups * m, out, bias=bias)
    w = rng.standard_normal((out, groups * m)).astype(np.float32)
    keep = mc.prune.n_of_m_mask(rng.random(w.shape), n, m)
    w[~keep] = 0
    w[rng.random(w.shape) < 0.1] = 0
    layer.weight.data[...] = w
    return layer


@given(st.integers(1, 9), st.integers(1, 6), st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 8), (2, 3)]),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_compressed_weight_round_trips_and_the_product_is_x_w_transposed_plus_b(out, groups, nm, bias, seed):
    n, m = nm
    rng = np.random.default_rng(seed)
    dense = nm_sparse_linear(rng, out, groups, n, m, bias)
    sparse = NMSparseLinear.from_dense(dense, n, m)
    np.testing.assert_array_equal(sparse.dense_weight(), dense.weight.data)
    np.testing.assert_array_equal(sparse.to_dense().weight.data, dense.weight.data)
    x = rng.standard_normal((5, groups * m)).astype(np.float32)
    expected = x @ dense.weight.data.T + (dense.bias.data if bias else 0)
    np.testing.assert_allclose(sparse(mc.Tensor(x)).data, expected, rtol=1e-6, atol=1e-6)
    kept = out * groups * n
    assert sparse.values.nbytes == 4 * kept
    assert sparse.positions.nbytes == -(-kept * position_bits(m) // 8)


def test_bad_weights_and_shapes_are_clear_errors():
    rng = np.random.default_rng(0)
    dense = nn.Linear(8, 3)
    with pytest.raises(ValueError, match=r"fc: the weight is not 2:4 sparse"):
        NMSparseLinear.from_dense(dense, 2, 4, name="fc")
    with pytest.raises(ValueError, match="multiple of m=4"):
        NMSparseLinear.from_dense(nn.Linear(6, 3), 2, 4)
    with pytest.raises(TypeError, match="expects a Linear"):
        NMSparseLinear.from_dense(nn.ReLU(), 2, 4)
    layer = NMSparseLinear.from_dense(nm_sparse_linear(rng, 3, 2, 2, 4), 2, 4)
    with pytest.raises(ValueError, match="in_features=8"):
        layer(mc.Tensor(np.ones((2, 7), np.float32)))
    with pytest.raises(ValueError, match=r"packed positions must be uint8 of shape \(2,\)"):
        NMSparseLinear(np.ones((2, 2, 2), np.float32), np.zeros(3, np.uint8), 2, 4)
    with pytest.raises(ValueError, match="no Linear"):
        mc.prune.compress_n_of_m(nn.Sequential(nn.ReLU()))


def test_a_2_4_pruned_mlp_compresses_to_0_56_of_its_weight_bytes_and_saves_exactly(pretrained_model, digits,
                                                                                     tmp_path):
    model = pretrained_model("mlp")
    with pytest.raises(ValueError, match="not 2:4 sparse"):
        mc.prune.compress_n_of_m(model)                         # not pruned yet: refused, model untouched
    mc.prune.Pruner(model, None, "2:4").prune()
    small = mc.prune.compress_n_of_m(model, 2, 4)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    weight_bytes = sum(m.weight.data.nbytes for m in linears)
    saved = weight_bytes - sum(m.weight.data.size // 2 * 4 + m.weight.data.size // 2 // 4 for m in linears)
    assert mc.report.model_size_bytes(small) == mc.report.model_size_bytes(model) - saved
    x = mc.Tensor(digits[2])
    with mc.no_grad():
        np.testing.assert_allclose(small(x).data, model(x).data, rtol=1e-5, atol=1e-5)
        path = mc.report.save(small, tmp_path / "nm.npz")
        np.testing.assert_array_equal(mc.report.load(path)(x).data, small(x).data)
