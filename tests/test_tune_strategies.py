"""Tuner core with fakes: scripted accuracies, a fake apply function; visiting order and stopping rules.

The fake world: a model with three tunable operators "0", "1", "2". Quantizing operator i to INT8 costs
COST[i] accuracy (times the recipe's factor), BF16 costs BF16_COST, FP32 costs nothing. The expected
visiting orders below are worked out by hand from the strategies' documented rules, not produced by the code.
"""
import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicompress as mc
from minicompress import tune
from minicompress.tune import tuner as tuner_module
from minicompress.tune.space import DEFAULT_RECIPES, uniform_config

BASE = 0.9
COST = {"0": 0.01, "1": 0.05, "2": 0.02}
RECIPE_FACTOR = [1.0, 1.5, 2.0]  # DEFAULT_RECIPES[0] is the best recipe in this world
BF16_COST = 0.004


def make_model():
    mc.manual_seed(0)
    return mc.nn.Sequential(mc.nn.Linear(4, 8), mc.nn.Linear(8, 8), mc.nn.Linear(8, 3))


class FakeModel:
    """What the fake apply function returns: remembers its configuration; forward adds scripted errors."""

    def __init__(self, float_model, config, output_shift=None):
        self.float_model, self.config, self.output_shift = float_model, config, output_shift or {}

    def __call__(self, x):
        out = self.float_model(x).data.astype(np.float64)
        shift = sum(self.output_shift.get(op, 0.0) for op, e in self.config.items() if e["dtype"] == "int8")
        return mc.Tensor(out + shift)


class World:
    """Scripted apply + eval functions; records the configurations evaluated, in order."""

    def __init__(self, cost=COST, bf16_cost=BF16_COST, penalty=0.0, output_shift=None, clock=None):
        self.cost, self.bf16_cost, self.penalty = cost, bf16_cost, penalty
        self.output_shift, self.clock = output_shift, clock
        self.visited = []

    def apply(self, model, config, calib_data):
        return FakeModel(model, config, self.output_shift)

    def accuracy(self, config):
        acc = BASE - self.penalty
        for op, entry in config.items():
            if entry["dtype"] == "int8":
                recipe = {k: entry[k] for k in ("scheme", "granularity", "observer")}
                acc -= self.cost[op] * RECIPE_FACTOR[list(DEFAULT_RECIPES).index(recipe)]
            elif entry["dtype"] == "int4":
                acc -= 3 * self.cost[op]
            elif entry["dtype"] == "bf16":
                acc -= self.bf16_cost
        return acc

    def eval_fn(self, model):
        if self.clock is not None:
            self.clock[0] += 1.0
        if isinstance(model, FakeModel):
            self.visited.append(model.config)
            return self.accuracy(model.config)
        return BASE  # the float model


def calib():
    return [np.ones((2, 4), dtype=np.float32), np.full((2, 4), 0.5, dtype=np.float32)]


def summary(config):
    """(recipe index or None, {op: dtype}) -- how the expected orders below are written."""
    recipes = {json.dumps({k: e[k] for k in ("scheme", "granularity", "observer")}, sort_keys=True)
               for e in config.values() if "scheme" in e}
    index = None
    if recipes:
        assert len(recipes) == 1
        index = [json.dumps(r, sort_keys=True) for r in DEFAULT_RECIPES].index(recipes.pop())
    return index, {op: e["dtype"] for op, e in config.items()}


def all8(recipe=0):
    return recipe, {"0": "int8", "1": "int8", "2": "int8"}


def fb(recipe, **dtypes):
    d = {"0": "int8", "1": "int8", "2": "int8"}
    d.update({k.lstrip("_"): v for k, v in dtypes.items()})
    return (recipe if "int8" in d.values() else None), d


def run(world, seed=None, **kw):
    kw.setdefault("measure_latency", False)
    model = make_model()
    if seed is not None:  # after make_model, which seeds 0 for its weights
        mc.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return tune.autotune(model, world.eval_fn, calib(), apply_fn=world.apply, **kw)


# ---- basic ----------------------------------------------------------------------------------------------
def test_basic_visits_recipes_then_single_fallbacks_then_accumulates():
    world = World()
    # target = 0.9 - 0.015 = 0.885.  Single bf16 fallbacks recover: op1 0.866 > op2 0.836 > op0 0.826
    # so the accumulated order is 1, 2, 0; {1} alone was already tried (not re-evaluated).
    result = run(world, tolerable_loss=0.015, criterion="absolute")
    expected = [all8(0), all8(1), all8(2),
                fb(0, _0="bf16"), fb(0, _1="bf16"), fb(0, _2="bf16"),
                fb(0, _1="bf16", _2="bf16"),                 # 0.9 - 0.01 - 0.008 = 0.882: not met
                fb(0, _0="bf16", _1="bf16", _2="bf16")]      # 0.9 - 0.012 = 0.888: met
    assert [summary(c) for c in world.visited] == expected
    assert result.met and result.trials == len(expected)
    assert result.accuracy == pytest.approx(0.888)
    assert result.stop_reason == "goal met"
    assert result.model.config == world.visited[-1]  # the model built for the winning trial
    assert result.config == world.visited[-1]
    assert result.baseline == BASE and result.best_trial == len(expected)


def test_basic_falls_back_to_fp32_when_bf16_is_not_enough():
    world = World(bf16_cost=0.02)
    # bf16 accumulation never reaches 0.885 (3 x 0.02 = 0.06 lost); fp32 accumulation in order 1, 2, 0:
    # {1: fp32} -> 0.87, {1, 2: fp32} -> 0.89 met.
    result = run(world, tolerable_loss=0.015, criterion="absolute")
    tail = [summary(c) for c in world.visited[6:]]
    assert tail == [fb(0, _1="bf16", _2="bf16"), fb(0, _0="bf16", _1="bf16", _2="bf16"),
                    fb(0, _1="fp32"), fb(0, _1="fp32", _2="fp32")]
    assert result.met and result.accuracy == pytest.approx(0.89)
    assert result.history[-1].diff == {"1": {"dtype": "fp32"}, "2": {"dtype": "fp32"}}


def test_all_int8_that_meets_the_goal_stops_at_the_first_trial():
    world = World()
    result = run(world, tolerable_loss=0.1, criterion="absolute")
    assert len(world.visited) == 1 and summary(world.visited[0]) == all8(0)
    assert result.met and result.trials == 1 and result.history[1].diff == {}


def test_lower_is_better_metric_reverses_the_ranking():
    # a loss metric: baseline 0.1, each int8 op *adds* its cost
    class LossWorld(World):
        def eval_fn(self, model):
            return 0.1 if not isinstance(model, FakeModel) else 0.1 + (BASE - super().eval_fn(model))

    world = LossWorld()
    result = run(world, tolerable_loss=0.015, criterion="absolute", higher_is_better=False)
    assert [summary(c) for c in world.visited][6] == fb(0, _1="bf16", _2="bf16")  # same order as higher-better
    assert result.met and result.accuracy == pytest.approx(0.112)


# ---- stopping rules and the no-solution result ----------------------------------------------------------
def test_max_trials_stops_and_returns_the_best_so_far():
    world = World()
    with pytest.warns(RuntimeWarning, match="NOT met"):
        result = tune.autotune(make_model(), world.eval_fn, calib(), apply_fn=world.apply, tolerable_loss=0.015,
                               criterion="absolute", max_trials=5, measure_latency=False)
    assert len(world.visited) == 5 and result.trials == 5
    assert not result.met and result.model is not None
    accuracies = [world.accuracy(c) for c in world.visited]
    assert result.accuracy == pytest.approx(max(accuracies))       # best of the five: {1: bf16} = 0.866
    assert summary(result.config) == fb(0, _1="bf16")
    assert "max_trials=5" in result.stop_reason and "NOT met" in result.message


def test_timeout_stops_before_starting_a_new_trial(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(tuner_module, "_clock", lambda: clock[0])
    world = World(clock=clock)  # each evaluation takes 1 "second"; the baseline is the first
    result = run(world, tolerable_loss=0.015, criterion="absolute", timeout=3.5)
    assert len(world.visited) == 3  # starts at t = 1, 2, 3; at t = 4 >= 3.5 no new trial starts
    assert "timeout" in result.stop_reason and not result.met


def test_no_solution_returns_best_found_never_none():
    world = World(penalty=0.001)  # even all-fp32 loses 0.001, and the goal allows no loss
    with pytest.warns(RuntimeWarning, match="NOT met") as record:
        result = tune.autotune(make_model(), world.eval_fn, calib(), apply_fn=world.apply, tolerable_loss=0.0,
                               measure_latency=False)
    assert result is not None and result.model is not None and not result.met
    assert result.stop_reason == "search space exhausted"
    # basic visits 3 recipes + 3 singles + (3 + 3 accumulated, one bf16 duplicate skipped) = 11 trials
    assert len(world.visited) == 11
    assert summary(result.config) == (None, {"0": "fp32", "1": "fp32", "2": "fp32"})
    assert result.accuracy == pytest.approx(BASE - 0.001)
    assert "best configuration found" in str(record[0].message)


def test_max_trials_zero_returns_the_float_model_with_a_plain_message():
    world = World()
    model = make_model()
    with pytest.warns(RuntimeWarning, match="NO configuration"):
        result = tune.autotune(model, world.eval_fn, calib(), apply_fn=world.apply, max_trials=0,
                               measure_latency=False)
    assert result.model is model and not result.met and result.trials == 0 and world.visited == []


# ---- mse --------------------------------------------------------------------------------------------------
def test_mse_ranks_by_single_op_output_error():
    shift = {"0": 0.3, "1": 0.1, "2": 0.2}  # quantizing op i alone shifts every output by shift[i]
    world = World(output_shift=shift, cost={"0": 0.05, "1": 0.01, "2": 0.02})
    strategy = tune.MSEStrategy()
    result = run(world, strategy=strategy, tolerable_loss=0.015, criterion="absolute")
    assert strategy.errors == pytest.approx({op: s ** 2 for op, s in shift.items()})  # MSE of a constant shift
    # after the 3 recipes: accumulated bf16 fallback in error order 0, 2, 1:
    # {0} -> 0.9 - 0.03 - 0.004 = 0.866, {0, 2} -> 0.9 - 0.01 - 0.008 = 0.882, {0, 1, 2} -> 0.888 (met)
    assert [summary(c) for c in world.visited[3:]] == [fb(0, _0="bf16"), fb(0, _0="bf16", _2="bf16"),
                                                       fb(0, _0="bf16", _1="bf16", _2="bf16")]
    assert result.met and result.accuracy == pytest.approx(0.888)


# ---- random -------------------------------------------------------------------------------------------------
def test_random_is_repeatable_with_manual_seed_and_never_repeats():
    def visited(seed):
        world = World(penalty=1.0)  # nothing meets the goal
        run(world, seed=seed, strategy="random", max_trials=12)
        return world.visited

    a, b = visited(3), visited(3)
    assert a == b and len(a) == 12
    assert summary(a[0]) == all8(0)
    keys = [json.dumps(c, sort_keys=True) for c in a]
    assert len(set(keys)) == len(keys)
    assert all(e["dtype"] in ("int8", "bf16", "fp32") for c in a for e in c.values())
    assert visited(4) != a


def test_random_stops_when_the_space_is_exhausted():
    world = World(penalty=1.0)
    result = run(world, seed=0, strategy=tune.RandomStrategy(patience=200), max_trials=100, ops=["1"],
                 recipes=[DEFAULT_RECIPES[0]])
    assert len(world.visited) == 3  # one op, three dtypes, one recipe
    assert {c["1"]["dtype"] for c in world.visited} == {"int8", "bf16", "fp32"}
    assert result.stop_reason == "search space exhausted"


# ---- exhaustive ---------------------------------------------------------------------------------------------
def test_exhaustive_visits_every_configuration_smallest_first():
    world = World(penalty=1.0)
    ops = ["0", "2"]  # 32 and 24 weights
    run(world, strategy="exhaustive", ops=ops, recipes=[DEFAULT_RECIPES[0]], max_trials=100)
    bits = {"int8": 8, "bf16": 16, "fp32": 32}
    got = [(c["0"]["dtype"], c["2"]["dtype"]) for c in world.visited]
    assert len(got) == 9 and len(set(got)) == 9
    sizes = [bits[a] * 32 + bits[b] * 24 for a, b in got]
    assert sizes == sorted(sizes)
    assert got[0] == ("int8", "int8") and got[-1] == ("fp32", "fp32")
    assert got[1] == ("int8", "bf16")  # 8*32 + 16*24 = 640 < 16*32 + 8*24 = 704


def test_exhaustive_refuses_a_huge_space():
    world = World()
    with pytest.raises(ValueError, match="max_configs"):
        run(world, strategy=tune.ExhaustiveStrategy(max_configs=10))


# ---- hawq (scripted sensitivities) ------------------------------------------------------------------------
def test_hawq_order_int4_least_sensitive_first_then_int8_then_fallback():
    world = World(penalty=1.0)
    strategy = tune.HAWQStrategy(sensitivities={"0": 0.5, "1": 0.1, "2": 0.3})
    run(world, strategy=strategy, recipes=[DEFAULT_RECIPES[0]], max_trials=100)
    got = [summary(c)[1] for c in world.visited]
    order = ["1", "2", "0"]  # ascending sensitivity
    expected = [{op: ("int4" if op in order[:k] else "int8") for op in "012"} for k in (3, 2, 1)]
    expected.append({"0": "int8", "1": "int8", "2": "int8"})
    for dtype in ("bf16", "fp32"):
        for k in (1, 2, 3):
            expected.append({op: (dtype if op in order[::-1][:k] else "int8") for op in "012"})
    assert got == expected


def test_hawq_missing_sensitivity_is_an_error():
    with pytest.raises(ValueError, match="no sensitivity"):
        run(World(), strategy=tune.HAWQStrategy(sensitivities={"0": 1.0}))


# ---- arguments ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(strategy="greedy"), ValueError, "strategy must be one of"),
    (dict(criterion="percent"), ValueError, "criterion must be one of"),
    (dict(tolerable_loss=-0.1), ValueError, "tolerable_loss"),
    (dict(max_trials=-1), ValueError, "max_trials"),
    (dict(timeout="soon"), ValueError, "timeout"),
    (dict(fallback_dtypes=("int8",)), ValueError, "fallback_dtypes"),
    (dict(recipes=[{"scheme": "sym", "granularity": "per_row", "observer": "minmax"}]), ValueError, "granularity"),
    (dict(ops=[]), ValueError, "ops is empty"),
    (dict(ops=["0", "fc9"]), ValueError, r"ops \['fc9'\] are not modules"),
    (dict(approach="qat"), ValueError, "approach must be one of"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    world = World()
    with pytest.raises(error, match=match):
        tune.autotune(make_model(), world.eval_fn, calib(), apply_fn=world.apply, **kwargs)


def test_bad_data_and_eval_fn_are_named():
    world = World()
    with pytest.raises(TypeError, match="eval_fn must be callable"):
        tune.autotune(make_model(), 0.9, calib(), apply_fn=world.apply)
    with pytest.raises(ValueError, match="calib_data is empty"):
        tune.autotune(make_model(), world.eval_fn, [], apply_fn=world.apply)
    with pytest.raises(TypeError, match="must be a number"):
        tune.autotune(make_model(), lambda m: "high", calib(), apply_fn=world.apply)
    with pytest.raises(ValueError, match="finite"):
        tune.autotune(make_model(), lambda m: math.nan, calib(), apply_fn=world.apply)


def test_model_without_tunable_ops_is_an_error():
    with pytest.raises(ValueError, match="no tunable operators"):
        tune.autotune(mc.nn.Sequential(), World().eval_fn, calib(), apply_fn=World().apply)


# ---- history ----------------------------------------------------------------------------------------------
def test_history_table_and_json_round_trip(tmp_path):
    world = World()
    result = run(world, tolerable_loss=0.015, criterion="absolute")
    history = result.history
    assert history[0].trial == 0 and history[0].accuracy == BASE  # the baseline row
    assert [t.trial for t in history] == list(range(len(history)))
    for t in list(history)[1:]:
        assert t.accuracy == pytest.approx(world.accuracy(t.config))
        assert t.loss == pytest.approx(BASE - t.accuracy)  # absolute criterion: metric units
    table = history.table()
    assert len(table.splitlines()) == 2 + len(history)
    assert "fp32 baseline" in table and "1->bf16" in table and "all->asym/per_tensor" in table
    path = history.save(tmp_path / "h.json")
    loaded = tune.History.load(path)
    assert [t.accuracy for t in loaded] == [t.accuracy for t in history]
    assert [t.config for t in loaded] == [t.config for t in history]
    assert loaded.criterion == "absolute"
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a tuning history"):
        tune.History.load(tmp_path / "bad.json")


# ---- criterion -------------------------------------------------------------------------------------------
@given(baseline=st.floats(0.05, 1.0), t=st.floats(0.0, 0.5), acc=st.floats(0.0, 1.0))
def test_criterion_matches_its_formula(baseline, t, acc):
    rel = tune.AccuracyCriterion(baseline, t, "relative")
    assert rel.is_met(acc) == (acc >= baseline * (1 - t) - 1e-12)
    assert rel.loss(acc) == pytest.approx((baseline - acc) / baseline)
    ab = tune.AccuracyCriterion(baseline, t, "absolute")
    assert ab.is_met(acc) == (acc >= baseline - t - 1e-12)
    low = tune.AccuracyCriterion(baseline, t, "relative", higher_is_better=False)
    assert low.is_met(acc) == (acc <= baseline * (1 + t) + 1e-12)
    assert low.loss(acc) == pytest.approx((acc - baseline) / baseline)


def test_relative_goal_on_a_zero_baseline_is_refused():
    with pytest.raises(ValueError, match="non-zero baseline"):
        tune.AccuracyCriterion(0.0, 0.01, "relative")


def test_config_diff_names_only_the_changes():
    ref = uniform_config(["a", "b"], "int8")
    cfg = tune.with_ops(ref, ["b"], "fp32")
    assert tune.config_diff(cfg, ref) == {"b": {"dtype": "fp32"}}
    other = uniform_config(["a", "b"], "int8", DEFAULT_RECIPES[1])
    assert tune.config_diff(other, ref) == {op: {"scheme": "asym", "granularity": "per_tensor"} for op in "ab"}
    with pytest.raises(ValueError, match="no operator 'c'"):
        tune.with_ops(ref, ["c"], "fp32")


def test_a_trial_scoring_nan_is_recorded_but_never_chosen(tmp_path):
    class NaNWorld(World):
        def eval_fn(self, model):
            acc = super().eval_fn(model)
            if isinstance(model, FakeModel) and summary(model.config) == fb(0, _1="bf16"):
                return float("nan")  # the most promising single fallback "crashes"
            return acc

    world = NaNWorld()
    result = run(world, tolerable_loss=0.015, criterion="absolute", max_trials=6)
    nan_trials = [t for t in result.history if math.isnan(t.accuracy)]
    assert len(nan_trials) == 1 and not nan_trials[0].met
    assert summary(result.config) == fb(0, _2="bf16")  # best of the others: 0.836
    assert "nan" in result.history.table()
    loaded = tune.History.load(result.history.save(tmp_path / "h.json"))
    assert loaded[5].accuracy is None and "nan" in loaded.table()
