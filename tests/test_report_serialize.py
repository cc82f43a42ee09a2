"""save / load of whole models: bit-equal outputs for every kind of compressed model; bad files rejected clearly."""
import json
import zipfile

import numpy as np
import pytest

import minicompress as mc
from minicompress import tune
from minicompress.report import load, read, save
from tests.strategies import seeded_mlp




def cnn():
    mc.manual_seed(0)
    model = mc.models.cnn()
    for m in model.modules():  # give BatchNorm non-trivial statistics, so folding matters
        if type(m).__name__ == "BatchNorm2d":
            m.running_mean = np.linspace(-0.2, 0.3, m.num_features).astype(np.float32)
            m.running_var = np.linspace(0.5, 2.0, m.num_features).astype(np.float32)
    return model.eval()


def outputs(model, x):
    with mc.no_grad():
        return model(mc.Tensor(x)).data


def assert_round_trip(model, x, path):
    before = outputs(model, x)
    written = save(model, path, example_input=x, metadata={"note": "test"})
    loaded = load(written)
    assert type(loaded) is type(model)
    assert [(n, type(m).__name__) for n, m in loaded.named_modules()] == \
        [(n, type(m).__name__) for n, m in model.named_modules()]
    after = outputs(loaded, x)
    assert after.dtype == before.dtype
    np.testing.assert_array_equal(after, before)  # bit-equal
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    return loaded


def static_config(model, recipe=None, fallback=None, dtype="int8"):
    config = tune.uniform_config(tune.tunable_ops(model), dtype, recipe)
    return tune.with_ops(config, fallback, "bf16") if fallback else config


def test_float_models(tmp_path, digit_images):
    assert_round_trip(seeded_mlp(), digit_images[:16], tmp_path / "mlp.npz")
    assert_round_trip(cnn(), digit_images[:16], tmp_path / "cnn.npz")


def test_static_quantized_with_bf16_fallback(tmp_path, digit_images):
    model = cnn()
    q = tune.apply_config(model, static_config(model, fallback=["9"]), [digit_images[:64]])
    loaded = assert_round_trip(q, digit_images[100:132], tmp_path / "q.npz")
    assert loaded[1].weight_int.dtype == np.int8
    assert loaded[1].in_qp.scale.dtype == np.float32 and loaded[1].in_qp.scale == q[1].in_qp.scale
    assert type(loaded[9]).__name__ == "LowPrecision" and loaded[9].dtype == "bf16"


def test_static_quantized_mlp_int4_and_per_tensor(tmp_path, digit_images):
    model = seeded_mlp()
    recipe = {"scheme": "asym", "granularity": "per_tensor", "observer": "minmax"}
    assert_round_trip(tune.apply_config(model, static_config(model, recipe), [digit_images[:64]]), digit_images[:32],
                      tmp_path / "pt.npz")
    assert_round_trip(tune.apply_config(model, static_config(model, dtype="int4"), [digit_images[:64]]), digit_images[:32],
                      tmp_path / "int4.npz")


def test_dynamic_quantized(tmp_path, digit_images):
    qd = mc.quant.quantize_dynamic(seeded_mlp())
    loaded = assert_round_trip(qd, digit_images[:32], tmp_path / "dyn.npz")
    assert type(loaded[0]).__name__ == "DynamicQuantizedLinear"


def test_pruned_shrunk_and_sparse(tmp_path, digit_images):
    model = seeded_mlp()
    model[0].weight.data[::2] = 0.0
    model[0].bias.data[::2] = 0.0
    model[2].weight.data[mc.prune.magnitude_mask(model[2].weight, 0.9) == False] = 0.0  # noqa: E712
    loaded = assert_round_trip(model, digit_images[:16], tmp_path / "pruned.npz")
    assert np.count_nonzero(loaded[2].weight.data) == np.count_nonzero(model[2].weight.data)
    small = mc.prune.shrink(model)
    assert small[0].out_features == 64
    assert_round_trip(small, digit_images[:16], tmp_path / "shrunk.npz")
    sparse = mc.prune.sparsify_linears(model, min_sparsity=0.5)
    loaded = assert_round_trip(sparse, digit_images[:16], tmp_path / "csr.npz")
    assert loaded[2].weight_csr.nnz == sparse[2].weight_csr.nnz


def test_shared_arrays_stay_shared(tmp_path, digit_images):
    a = mc.nn.Linear(4, 4)
    model = mc.nn.Sequential(a, mc.nn.ReLU(), a)  # one layer used twice (tied weights)
    loaded = load(save(model, tmp_path / "tied.npz"))
    assert loaded[0] is loaded[2]
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))


def test_the_file_is_one_npz_with_readable_metadata(tmp_path, digit_images):
    path = save(seeded_mlp(), tmp_path / "m", example_input=digit_images[:5], metadata={"accuracy": 0.97})
    assert str(path).endswith(".npz")
    with zipfile.ZipFile(path) as z:
        assert "__minicompress__.npy" in z.namelist()
    meta, arrays = read(path)
    assert meta["metadata"] == {"accuracy": 0.97} and meta["example_input"]["shape"] == [5, 64]
    arch = {row["name"]: row for row in meta["architecture"]}
    assert arch["0"]["type"].endswith(":Linear") and arch["0"]["args"]["in_features"] == 64
    assert sum(a.size for a in arrays.values()) == sum(p.data.size for p in seeded_mlp().parameters())


# ---- bad files --------------------------------------------------------------------------------------------------
def test_truncated_file(tmp_path):
    path = save(seeded_mlp(), tmp_path / "m.npz")
    data = open(path, "rb").read()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load(tmp_path / "cut.npz")


def test_corrupt_array_fails_its_checksum(tmp_path):
    path = save(seeded_mlp(), tmp_path / "m.npz")
    with np.load(path) as f:
        files = {k: f[k] for k in f.files}
    files["a0"] = files["a0"].copy()
    files["a0"][0, 0] += 1.0  # a valid zip, a valid array, the wrong numbers
    np.savez(tmp_path / "bad.npz", **files)
    with pytest.raises(ValueError, match="fails its checksum"):
        load(tmp_path / "bad.npz")
    files["a0"] = files["a0"][:3]
    np.savez(tmp_path / "shape.npz", **files)
    with pytest.raises(ValueError, match="metadata says"):
        load(tmp_path / "shape.npz")
    del files["a1"]
    np.savez(tmp_path / "missing.npz", **files)
    with pytest.raises(ValueError, match="arrays missing"):
        load(tmp_path / "missing.npz")


def test_metadata_problems(tmp_path):
    path = save(seeded_mlp(), tmp_path / "m.npz")
    with np.load(path) as f:
        files = {k: f[k] for k in f.files}
    meta = json.loads(files["__minicompress__"].tobytes())
    meta["version"] = 99
    files["__minicompress__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "v.npz", **files)
    with pytest.raises(ValueError, match="version 99"):
        load(tmp_path / "v.npz")
    files["__minicompress__"] = np.frombuffer(b"{not json", np.uint8)
    np.savez(tmp_path / "j.npz", **files)
    with pytest.raises(ValueError, match="metadata is corrupt"):
        load(tmp_path / "j.npz")
    seeded_mlp().save(tmp_path / "state.npz")  # a plain state_dict file
    with pytest.raises(ValueError, match="no minicompress metadata"):
        load(tmp_path / "state.npz")
    with pytest.raises(ValueError, match="no file"):
        load(tmp_path / "nowhere.npz")


def test_mismatched_model(tmp_path):
    path = save(seeded_mlp(), tmp_path / "m.npz")
    load(path, like=seeded_mlp())  # matches
    with pytest.raises(ValueError, match="does not match the expected model") as info:
        load(path, like=cnn())
    assert "Linear expected" in str(info.value) or "expected" in str(info.value)
    other = mc.nn.Sequential(mc.nn.Linear(64, 100), mc.nn.ReLU(), mc.nn.Linear(100, 64), mc.nn.ReLU(),
                             mc.nn.Linear(64, 10))
    with pytest.raises(ValueError, match=r"0.weight: shape \(100, 64\) expected"):
        load(path, like=other)


class Custom(mc.nn.Module):  # a user's own class, outside the minicompress package
    def __init__(self):
        super().__init__()
        self.fc = mc.nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)


def test_classes_outside_the_package_need_permission(tmp_path):
    path = save(Custom(), tmp_path / "c.npz")
    with pytest.raises(ValueError, match="outside the minicompress package"):
        load(path)
    model = load(path, classes=[Custom])
    assert isinstance(model, Custom) and isinstance(model.fc, mc.nn.Linear)


def test_what_cannot_be_saved_is_refused(tmp_path):
    model = seeded_mlp()
    handle = model[0].register_forward_hook(lambda m, a, o: None)
    with pytest.raises(ValueError, match="forward hooks"):
        save(model, tmp_path / "h.npz")
    handle.remove()
    model.scorer = lambda x: x  # a lambda is code, not data
    with pytest.raises(TypeError, match="module-level function"):
        save(model, tmp_path / "l.npz")


def test_tiny_transformer_float_and_quantized(tmp_path, digit_images):
    mc.manual_seed(0)
    model = mc.models.tiny_transformer().eval()
    assert_round_trip(model, digit_images[:8], tmp_path / "tt.npz")
    ops = tune.tunable_ops(model)
    q = tune.apply_config(model, tune.with_ops(tune.uniform_config(ops), ops[:1], "bf16"), [digit_images[:32]])
    loaded = assert_round_trip(q, digit_images[40:48], tmp_path / "ttq.npz")
    assert type(loaded.get_submodule(ops[1])).__name__ == "QuantizedLinear"
