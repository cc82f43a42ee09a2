"""The tuner wired to the real quantizer (mc.quant prepare/convert, mc.precision.LowPrecision) on a small MLP.

The metrics are computed against the float model itself (agreement of predictions, output MSE), so the
tests need no training and the expected facts hold for any weights: all-fp32 reproduces the float model
exactly, all-INT8 does not.
"""
import numpy as np
import pytest

import minicompress as mc
from minicompress import tune


@pytest.fixture(scope="module")
def data():
    X, _ = mc.data.load_digits()
    return X[:256], [X[300:364], X[364:428]]


def mlp():
    mc.manual_seed(0)
    return mc.models.mlp().eval()


def outputs(model, x):
    with mc.no_grad():
        out = model(mc.Tensor(x))
    return out.data.astype(np.float64)


def test_all_int8_meets_an_easy_goal_and_the_input_model_is_untouched(data):
    X, calib = data
    model = mlp()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    reference = outputs(model, X).argmax(axis=1)
    agreement = lambda m: float(np.mean(outputs(m, X).argmax(axis=1) == reference))  # noqa: E731
    result = tune.autotune(model, agreement, calib, tolerable_loss=0.05, measure_latency=True)
    assert result.met and result.trials == 1 and result.baseline == 1.0
    assert {type(m).__name__ for m in result.model.modules()} >= {"QuantizedLinear"}
    assert result.history[1].size_bytes < result.history[0].size_bytes / 3  # int8 weights: ~4x smaller
    assert result.history[1].latency_ms > 0
    assert [type(m).__name__ for m in model.modules()] == ["MLP", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_a_goal_tighter_than_all_int8_is_met_by_fallback(data):
    X, calib = data
    model = mlp()
    float_out = outputs(model, X)
    mse = lambda m: float(np.mean((outputs(m, X) - float_out) ** 2))  # noqa: E731  lower is better, baseline 0
    int8_error = mse(tune.apply_config(model, tune.uniform_config(tune.tunable_ops(model)), calib))
    assert int8_error > 0
    goal = 0.5 * int8_error
    result = tune.autotune(model, mse, calib, tolerable_loss=goal, criterion="absolute", higher_is_better=False,
                           recipes=[tune.DEFAULT_RECIPE], measure_latency=False)
    assert result.met and result.accuracy <= goal
    assert result.history[1].diff == {} and not result.history[1].met  # all-INT8 tried first, not enough
    dtypes = [entry["dtype"] for entry in result.config.values()]
    assert "int8" in dtypes and set(dtypes) & {"bf16", "fp32"}  # mixed
    assert result.accuracy == pytest.approx(mse(result.model))  # the returned model is the one measured
    for op, entry in result.config.items():
        kind = type(result.model.get_submodule(op)).__name__
        assert kind == {"int8": "QuantizedLinear", "bf16": "LowPrecision", "fp32": "Linear"}[entry["dtype"]]


def test_hawq_and_mse_strategies_run_on_real_models(data):
    X, calib = data
    model = mlp()
    float_out = outputs(model, X)
    mse = lambda m: float(np.mean((outputs(m, X) - float_out) ** 2))  # noqa: E731
    hawq = tune.HAWQStrategy(n_samples=2)
    mc.manual_seed(0)
    result = tune.autotune(model, mse, calib, tolerable_loss=1e9, criterion="absolute", higher_is_better=False,
                           strategy=hawq, measure_latency=False)
    assert result.met and result.trials == 1
    assert {e["dtype"] for e in result.config.values()} == {"int4"}  # the first HAWQ trial: everything in 4 bits
    assert set(hawq.sensitivities) == {"0", "2", "4"} and all(np.isfinite(list(hawq.sensitivities.values())))
    mse_strategy = tune.MSEStrategy()
    with pytest.warns(RuntimeWarning, match="NOT met"):  # nothing but float reaches an output error of 0
        tune.autotune(model, mse, calib, tolerable_loss=0.0, criterion="absolute", higher_is_better=False,
                      strategy=mse_strategy, recipes=[tune.DEFAULT_RECIPE], max_trials=2, measure_latency=False)
    for op, err in mse_strategy.errors.items():  # quantizing one layer alone, measured on the calibration data
        alone = tune.with_ops(tune.uniform_config(["0", "2", "4"], "fp32"), [op], "int8")
        q = tune.apply_config(model, alone, calib)
        expected = np.mean([np.mean((outputs(q, b) - outputs(model, b)) ** 2) for b in calib])
        assert err == pytest.approx(expected, rel=1e-9)


def test_dynamic_approach(data):
    X, calib = data
    model = mlp()
    q = tune.apply_config(model, tune.uniform_config(tune.tunable_ops(model)), calib, approach="dynamic")
    assert {type(m).__name__ for m in q.modules()} >= {"DynamicQuantizedLinear"}
    with pytest.raises(ValueError, match="approach"):
        tune.apply_config(model, {}, calib, approach="qat")
    with pytest.raises(ValueError, match="not modules"):
        tune.apply_config(model, {"fc9": {"dtype": "fp32"}}, calib)


def test_a_tuning_result_saves_with_its_history(data, tmp_path):
    X, calib = data
    model = mlp()
    reference = outputs(model, X).argmax(axis=1)
    agreement = lambda m: float(np.mean(outputs(m, X).argmax(axis=1) == reference))  # noqa: E731
    result = tune.autotune(model, agreement, calib, tolerable_loss=0.05, measure_latency=False)
    path = result.save(tmp_path / "tuned.npz", example_input=X[:4])
    meta, _ = mc.report.read(path)
    tuning = meta["metadata"]["tuning"]
    assert tuning["met"] and tuning["config"] == result.config
    assert [t["accuracy"] for t in tuning["history"]["trials"]] == [t.accuracy for t in result.history]
    np.testing.assert_array_equal(outputs(mc.report.load(path), X), outputs(result.model, X))
