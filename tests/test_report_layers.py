"""Per-layer report: sizes, params, MACs, BOPs, sparsity, dtypes and float-vs-compressed error.

Expected values come from hand formulas (MACs of a Linear = in * out per sample; of a Conv2d =
C_out * C_in * kh * kw * H_out * W_out), from the arrays themselves (nbytes, count of zeros), and from
SQNR / cosine written again here in NumPy.
"""
import json
import math

import numpy as np
import pytest

import minicompress as mc
from minicompress import tune
from minicompress.report import model_size_bytes, summarize
from tests.strategies import seeded_mlp




def rows_by_name(report):
    return {r["name"]: r for r in report.rows}


def sqnr_db(ref, out):
    ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - out) ** 2))


def test_float_mlp_params_bytes_macs_bops(digit_images):
    model = seeded_mlp()
    rep = summarize(model, digit_images[:8], latency=False)
    rows = rows_by_name(rep)
    assert list(rows) == ["0", "2", "4"]
    for name, (n_in, n_out) in {"0": (64, 128), "2": (128, 64), "4": (64, 10)}.items():
        r = rows[name]
        assert r["params"] == n_in * n_out + n_out
        assert r["bytes"] == 4 * (n_in * n_out + n_out)
        assert r["macs"] == n_in * n_out
        assert r["bops"] == n_in * n_out * 32 * 32
        assert (r["dtype"], r["w_bits"], r["a_bits"]) == ("fp32", 32, 32)
        assert r["sparsity"] == 0.0
    assert rep.totals["bytes"] == sum(p.data.nbytes for p in model.parameters())
    assert rep.totals["macs"] == 64 * 128 + 128 * 64 + 64 * 10


def test_cnn_macs_follow_the_conv_formula(digit_images):
    mc.manual_seed(0)
    model = mc.models.cnn().eval()
    rows = rows_by_name(summarize(model, digit_images[:4], latency=False))
    assert rows["1"]["macs"] == 16 * 1 * 3 * 3 * 8 * 8
    assert rows["4"]["macs"] == 32 * 16 * 3 * 3 * 8 * 8
    assert rows["9"]["macs"] == 512 * 10
    assert rows["2"]["macs"] == 0 and rows["2"]["type"] == "BatchNorm2d"


def test_a_model_against_itself_is_exact(digit_images):
    model = seeded_mlp()
    rep = summarize(model, digit_images[:8], reference=model, latency=False)
    assert all(r["sqnr_db"] == math.inf and r["cosine"] == pytest.approx(1.0) for r in rep.rows)
    assert rep.totals["compression_ratio"] == 1.0


def test_sparsity_counts_zero_weights(digit_images):
    model = seeded_mlp()
    w = model[2].weight.data
    w[mc.prune.magnitude_mask(w, 0.75) == False] = 0.0  # noqa: E712
    rows = rows_by_name(summarize(model, digit_images[:8], latency=False))
    assert rows["2"]["sparsity"] == pytest.approx(1 - np.count_nonzero(w) / w.size)
    assert rows["2"]["sparsity"] == pytest.approx(0.75)
    assert rows["0"]["sparsity"] == 0.0


def test_shrunk_and_sparse_models(digit_images):
    model = seeded_mlp()
    model[0].weight.data[:32] = 0.0  # 32 dead output channels of layer 0 (bias too)
    model[0].bias.data[:32] = 0.0
    small = mc.prune.shrink(model)
    rows = rows_by_name(summarize(small, digit_images[:8], latency=False))
    assert rows["0"]["params"] == 64 * 96 + 96 and rows["2"]["macs"] == 96 * 64
    sparse = mc.prune.sparsify_linears(model, min_sparsity=0.2)
    rows = rows_by_name(summarize(sparse, digit_images[:8], reference=model, latency=False))
    assert rows["0"]["type"] == "SparseLinear"
    assert rows["0"]["sparsity"] == pytest.approx(0.25)
    csr = sparse[0].weight_csr
    assert rows["0"]["bytes"] == csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes + sparse[0].bias.nbytes
    assert rows["0"]["sqnr_db"] > 100  # same arithmetic up to summation order
    mc.prune.Pruner(model, None, "2:4").prune()                 # N:M stored compressed: the kept values count
    nm = mc.prune.compress_n_of_m(model, 2, 4)
    rows = rows_by_name(summarize(nm, digit_images[:8], reference=model, latency=False))
    assert rows["0"]["type"] == "NMSparseLinear" and rows["0"]["params"] == 64 * 128 // 2 + 128
    assert rows["0"]["sparsity"] >= 0.5 and rows["0"]["macs"] == 64 * 128
    assert rows["0"]["bytes"] == nm[0].values.nbytes + nm[0].positions.nbytes + nm[0].bias.nbytes
    assert rows["0"]["sqnr_db"] > 100


def test_quantized_columns_and_error_against_float(digit_images):
    model = seeded_mlp()
    ops = tune.tunable_ops(model)
    recipe = {"scheme": "asym", "granularity": "per_tensor", "observer": "histogram"}
    config = tune.with_ops(tune.uniform_config(ops, "int8", recipe), ["4"], "bf16")
    q = tune.apply_config(model, config, [digit_images[:128]])
    x = digit_images[200:264]
    rep = summarize(q, x, reference=model, latency=True, repeat=2)
    rows = rows_by_name(rep)
    r0 = rows["0"]
    assert (r0["type"], r0["dtype"], r0["w_bits"], r0["a_bits"]) == ("QuantizedLinear", "int8", 8, 8)
    assert (r0["scheme"], r0["granularity"], r0["observer"]) == ("asym", "per_tensor", "HistogramObserver")
    layer = q[0]
    assert r0["sparsity"] == pytest.approx(np.mean(layer.weight_int == layer.weight_zero_point[:, None]))
    assert r0["bops"] == 64 * 128 * 8 * 8
    assert (rows["4"]["dtype"], rows["4"]["w_bits"], rows["4"]["type"]) == ("bf16", 16, "Linear")
    out_q = q(mc.Tensor(x)).data.astype(np.float64)
    out_f = model(mc.Tensor(x)).data.astype(np.float64)
    assert rep.totals["output_sqnr_db"] == pytest.approx(sqnr_db(out_f, out_q), rel=1e-9)
    cos = np.sum(out_f * out_q) / (np.linalg.norm(out_f) * np.linalg.norm(out_q))
    assert rep.totals["output_cosine"] == pytest.approx(cos, rel=1e-9)
    # layer 0 fused its ReLU: compared with the float model's ReLU output, which is what it computes
    with mc.no_grad():
        h_f = model[1](model[0](mc.Tensor(x))).data
        h_q = q[0](mc.Tensor(x))
    h_q = h_q.dequantize().data if hasattr(h_q, "dequantize") else h_q.data
    assert r0["sqnr_db"] == pytest.approx(sqnr_db(h_f, h_q), rel=1e-6)
    # what it stores: every buffer of the converted model, nothing else
    assert rep.totals["bytes"] == sum(np.asarray(v).nbytes for v in q.state_dict().values())
    assert rep.totals["compression_ratio"] == pytest.approx(model_size_bytes(model) / rep.totals["bytes"])
    assert rep.totals["latency_ms"] > 0


def test_table_and_json(tmp_path, digit_images):
    model = seeded_mlp()
    rep = summarize(model, digit_images[:8], reference=model, latency=False)
    lines = rep.table().splitlines()
    assert len(lines) == 2 + len(rep.rows) + 2 and lines[-1].startswith("total:")
    path = rep.save_json(tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert [r["name"] for r in data["rows"]] == ["0", "2", "4"]
    assert data["rows"][0]["sqnr_db"] == "inf"  # non-finite values stay visible as strings
    assert data["totals"]["macs"] == rep.totals["macs"]
