"""Model zoo: shapes, PyTorch's state_dict names and shapes, the CNN's forward against a NumPy re-implementation
of its documented architecture, the accuracy bars of issue 2 (each zoo model trained once per source, via
the `pretrained_model` fixture), and `pretrained`'s cache (atomic file, stale-source key, corrupt file,
fresh copies, the library's random generator left untouched)."""
import os
import shutil
import warnings

import numpy as np
import pytest

import minicompress as mc
from minicompress import models
from minicompress.train import Recipe, evaluate

BARS = {"mlp": 0.97, "cnn": 0.985, "tiny_transformer": 0.965}


def build(name):
    return models.ZOO[name]()


@pytest.mark.parametrize("name", sorted(models.ZOO))
def test_zoo_models_map_digit_rows_to_logits_and_carry_a_recipe(name):
    mc.manual_seed(0)
    model = build(name)
    X, _ = mc.data.load_digits()
    out = model(mc.Tensor(X[:5]))
    assert out.shape == (5, 10) and out.dtype == np.float32
    assert isinstance(model.recipe, Recipe)
    with pytest.raises(ValueError):
        model(mc.Tensor(X[:5, :60]))


def test_mlp_state_dict_is_pytorchs():
    sd = models.mlp().state_dict()
    assert {k: v.shape for k, v in sd.items()} == {
        "0.weight": (128, 64), "0.bias": (128,), "2.weight": (64, 128), "2.bias": (64,),
        "4.weight": (10, 64), "4.bias": (10,)}
    assert [type(m).__name__ for m in models.mlp()] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]


def test_cnn_state_dict_is_pytorchs():
    sd = models.cnn().state_dict()
    bn = lambda i, c: {f"{i}.weight": (c,), f"{i}.bias": (c,), f"{i}.running_mean": (c,),  # noqa: E731
                       f"{i}.running_var": (c,), f"{i}.num_batches_tracked": ()}
    expected = {"1.weight": (16, 1, 3, 3), "1.bias": (16,), **bn(2, 16),
                "4.weight": (32, 16, 3, 3), "4.bias": (32,), **bn(5, 32),
                "9.weight": (10, 512), "9.bias": (10,)}
    assert {k: v.shape for k, v in sd.items()} == expected


def test_tiny_transformer_state_dict_uses_pytorchs_encoder_names():
    mc.manual_seed(0)
    sd = build("tiny_transformer").state_dict()
    d, ff = 32, 64
    layer = {"self_attn.in_proj_weight": (3 * d, d), "self_attn.in_proj_bias": (3 * d,),
             "self_attn.out_proj.weight": (d, d), "self_attn.out_proj.bias": (d,),
             "linear1.weight": (ff, d), "linear1.bias": (ff,), "linear2.weight": (d, ff), "linear2.bias": (d,),
             "norm1.weight": (d,), "norm1.bias": (d,), "norm2.weight": (d,), "norm2.bias": (d,)}
    for i in range(2):
        for k, shape in layer.items():
            assert sd[f"encoder.layers.{i}.{k}"].shape == shape
    assert sd["pos_embedding"].shape == (1, 9, d) and sd["cls_token"].shape == (1, 1, d)
    assert sd["head.weight"].shape == (10, d) and sd["embed.weight"].shape == (d, 8)
    assert not any(k.startswith("encoder.layers.2") for k in sd)


def numpy_cnn(sd, x, eps=1e-5):
    """The CNN of the docstring, eval mode, written with plain NumPy loops over the 3x3 taps."""
    def conv3x3(a, w, b):
        n, c, h, wd = a.shape
        p = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)))
        out = np.zeros((n, w.shape[0], h, wd)) + b[None, :, None, None]
        for di in range(3):
            for dj in range(3):
                out += np.einsum("nchw,oc->nohw", p[:, :, di:di + h, dj:dj + wd], w[:, :, di, dj])
        return out

    def bn(a, i):
        scale = sd[f"{i}.weight"] / np.sqrt(sd[f"{i}.running_var"] + eps)
        return (a - sd[f"{i}.running_mean"][None, :, None, None]) * scale[None, :, None, None] \
            + sd[f"{i}.bias"][None, :, None, None]

    a = x.reshape(-1, 1, 8, 8).astype(np.float64)  # row-major 8x8 image
    a = np.maximum(bn(conv3x3(a, sd["1.weight"], sd["1.bias"]), 2), 0)
    a = np.maximum(bn(conv3x3(a, sd["4.weight"], sd["4.bias"]), 5), 0)
    n, c = a.shape[:2]
    a = a.reshape(n, c, 4, 2, 4, 2).max(axis=(3, 5))  # 2x2 max-pool
    return a.reshape(n, -1) @ sd["9.weight"].T + sd["9.bias"]


def test_cnn_forward_matches_numpy_reference_in_eval_mode():
    mc.manual_seed(1)
    model = models.cnn()
    rng = np.random.default_rng(0)
    sd = model.state_dict()
    for i, c in ((2, 16), (5, 32)):  # non-trivial BatchNorm statistics and affine parameters
        sd[f"{i}.running_mean"] = rng.normal(size=c).astype(np.float32)
        sd[f"{i}.running_var"] = rng.uniform(0.5, 2.0, size=c).astype(np.float32)
        sd[f"{i}.weight"] = rng.uniform(0.5, 1.5, size=c).astype(np.float32)
        sd[f"{i}.bias"] = rng.normal(size=c).astype(np.float32)
    model.load_state_dict(sd)
    X, _ = mc.data.load_digits()
    with mc.no_grad():
        out = model.eval()(mc.Tensor(X[:6])).data
    np.testing.assert_allclose(out, numpy_cnn(sd, X[:6]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(BARS))
def test_accuracy_bar_from_scratch_with_fit_defaults(name, pretrained_model, digits):
    build(name)
    model = pretrained_model(name)
    assert not model.training
    _, _, X_test, y_test = digits
    accuracy = evaluate(model, (X_test, y_test))
    assert accuracy >= BARS[name], f"{name}: held-out accuracy {accuracy:.4f} < {BARS[name]}"


def test_pretrained_returns_fresh_copies_and_leaves_the_generator_alone(pretrained_model):
    first = pretrained_model("mlp")
    mc.manual_seed(123)
    expected_next = np.random.default_rng(123).random(3)
    second = models.pretrained("mlp")
    assert mc.core.rng().random(3).tolist() == expected_next.tolist()
    assert second is not first and not second.training
    for k, v in first.state_dict().items():
        np.testing.assert_array_equal(second.state_dict()[k], v)
    second[0].weight.data[...] = 0
    assert np.any(models.pretrained("mlp")[0].weight.data != 0)


def test_pretrained_cache_trains_once_loads_later_and_survives_a_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICOMPRESS_CACHE", str(tmp_path / "cache"))
    path = models.cache_path("mlp", seed=3)
    assert path.startswith(str(tmp_path)) and models.source_hash() in os.path.basename(path)
    trained = models.pretrained("mlp", seed=3)
    assert os.path.exists(path) and os.listdir(tmp_path / "cache") == [os.path.basename(path)]  # no temp left
    X_test, y_test = mc.data.digits_split()[2:]
    assert evaluate(trained, (X_test, y_test)) >= BARS["mlp"]

    def no_training(*args, **kwargs):
        raise AssertionError("pretrained trained although a cache file exists")

    monkeypatch.setattr(models, "fit", no_training)
    loaded = models.pretrained("mlp", seed=3)
    for k, v in trained.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)
    monkeypatch.undo()
    monkeypatch.setenv("MINICOMPRESS_CACHE", str(tmp_path / "cache"))

    with open(path, "wb") as f:  # a truncated file: warn, retrain (deterministically) and rewrite it
        f.write(b"PK\x03\x04 not a zip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        retrained = models.pretrained("mlp", seed=3)
    assert any("unreadable cache file" in str(w.message) for w in caught)
    for k, v in trained.state_dict().items():
        np.testing.assert_array_equal(retrained.state_dict()[k], v)  # same seed, same source: same bits
    assert mc.nn.module.load_arrays(path).keys() == trained.state_dict().keys()


def test_source_hash_covers_what_decides_the_weights(tmp_path):
    package = os.path.dirname(models.__file__)
    copy = tmp_path / "minicompress"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert models.source_hash(str(copy)) == models.source_hash(package)
    with open(copy / "quant" / "__init__.py", "a") as f:  # not in SOURCE_PARTS: same key
        f.write("\n# a comment\n")
    assert models.source_hash(str(copy)) == models.source_hash(package)
    for part in ("nn/linear.py", "optim.py", "train.py", "data/digits.py", "core/tensor.py"):
        edited = tmp_path / part.replace("/", "_")
        shutil.copytree(package, edited, ignore=shutil.ignore_patterns("__pycache__"))
        with open(edited / part, "a") as f:
            f.write("\n# changed\n")
        assert models.source_hash(str(edited)) != models.source_hash(package), part


def test_pretrained_errors():
    with pytest.raises(ValueError, match="unknown model name 'resnet'.*mlp"):
        models.pretrained("resnet")
    with pytest.raises(ValueError, match="seed"):
        models.pretrained("mlp", seed=-1)
