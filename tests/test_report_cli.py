"""`python -m minicompress report PATH`: the per-layer report of a saved model, from the command line."""
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minicompress as mc
from minicompress import cli, tune
from minicompress.report import load, save, summarize


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    X, _ = mc.data.load_digits()
    mc.manual_seed(0)
    model = mc.models.mlp().eval()
    q = tune.apply_config(model, tune.with_ops(tune.uniform_config(["0", "2", "4"]), ["4"], "fp32"), [X[:64]])
    path = save(q, tmp_path_factory.mktemp("cli") / "q.npz", example_input=X[:8], metadata={"accuracy": 0.97})
    return path, q, X


def test_report_command_prints_the_table_and_writes_json(saved, tmp_path, capsys):
    path, q, X = saved
    out_json = tmp_path / "r.json"
    assert cli.main(["report", str(path), "--no-latency", "--json", str(out_json), "--batch", "16"]) == 0
    text = capsys.readouterr().out
    assert "QuantizedLinear" in text and "MLP" in text and "accuracy: 0.97" in text
    rows = json.loads(out_json.read_text())["rows"]
    assert [(r["name"], r["dtype"]) for r in rows] == [("0", "int8"), ("2", "int8"), ("4", "fp32")]
    assert rows[0]["macs"] == 64 * 128  # the digits example rebuilt from the recorded input shape
    expected = summarize(q, X[:16], latency=False).rows
    assert [r["bytes"] for r in rows] == [r["bytes"] for r in expected]


def test_report_command_on_a_bad_file_exits_2_with_a_message(tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    assert cli.main(["report", str(tmp_path / "junk.npz")]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


def test_python_dash_m_entry_point(saved):
    path, _, _ = saved
    done = subprocess.run([sys.executable, "-m", "minicompress", "report", str(path), "--no-latency"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "total:" in done.stdout


def test_summarize_without_an_input_gives_the_static_columns(saved):
    _, q, _ = saved
    rep = summarize(q, None)
    assert [r["macs"] for r in rep.rows] == [0, 0, 0] and rep.rows[0]["w_bits"] == 8
    assert "latency_ms" not in rep.totals


@settings(max_examples=10)
@given(widths=st.lists(st.integers(1, 6), min_size=2, max_size=4), seed=st.integers(0, 1000))
def test_any_float_mlp_round_trips_bit_exactly(tmp_path_factory, widths, seed):
    mc.manual_seed(seed)
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [mc.nn.Linear(a, b), mc.nn.Tanh()]
    model = mc.nn.Sequential(*layers)
    x = np.random.default_rng(seed).normal(size=(3, widths[0])).astype(np.float32)
    loaded = load(save(model, tmp_path_factory.mktemp("h") / "m.npz"))
    np.testing.assert_array_equal(loaded(mc.Tensor(x)).data, model(mc.Tensor(x)).data)


def test_report_command_shows_a_saved_tuning_history(tmp_path, capsys):
    X, _ = mc.data.load_digits()
    mc.manual_seed(0)
    model = mc.models.mlp().eval()
    ref = model(mc.Tensor(X[:64])).data.argmax(axis=1)
    agree = lambda m: float(np.mean(m(mc.Tensor(X[:64])).data.argmax(axis=1) == ref))  # noqa: E731
    result = tune.autotune(model, agree, [X[100:164]], tolerable_loss=0.1, measure_latency=False)
    path = result.save(tmp_path / "t.npz")
    assert cli.main(["report", str(path), "--no-latency"]) == 0
    text = capsys.readouterr().out
    assert "tuning: goal met=True" in text and "fp32 baseline" in text and "all int8 (default recipe)" in text
    assert "MACs" in text  # no example input was saved: the static columns only
