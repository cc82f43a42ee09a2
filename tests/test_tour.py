"""`python -m minicompress tour`: one --fast run through the command line (shared by the tests below), its table
and JSON checked against independent evaluations, the row arithmetic, and the issues' accuracy/size bars."""
import io
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import minicompress as mc
from minicompress import quant
from minicompress.cli import tour

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_TEST = 360

# Every technique of the issue, with the models the tour must apply it to.
EXPECTED = {
    "fp32": {"mlp", "cnn", "tiny_transformer"},
    "bf16 autocast": {"mlp", "cnn", "tiny_transformer"},
    "dynamic int8": {"mlp", "tiny_transformer"},
    "static int8": {"mlp", "cnn"},
    "ptq int4": {"mlp"},
    "qat int4": {"mlp"},
    "agp 90% csr": {"mlp"},
    "2:4": {"mlp"},
    "channel 50% shrunk": {"cnn"},
    "group lasso shrunk": {"cnn"},
    "student, no teacher": {"mlp/4"},
    "student + kd": {"mlp/4"},
    "graph fusion": {"cnn"},
    "autotune 1%": {"cnn"},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One `python -m minicompress tour --fast --json PATH` (the CLI path; main() does the work)."""
    path = tmp_path_factory.mktemp("tour") / "tour.json"
    done = subprocess.run([sys.executable, "-m", "minicompress", "tour", "--fast", "--json", str(path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    payload = json.loads(path.read_text())
    return done.stdout, payload


@pytest.fixture(scope="module")
def rows(run):
    return {(r["technique"], r["model"]): r for r in run[1]["rows"]}


def float_row(rows, row):
    return rows[("fp32", row["model"].split("/")[0])]  # "mlp/4" is a student of the MLP


def test_every_technique_appears_on_its_models(run, rows):
    found = {}
    for technique, model in rows:
        found.setdefault(technique, set()).add(model)
    assert found == EXPECTED
    assert len(run[1]["rows"]) == len(rows)  # no duplicated (technique, model)
    assert run[1]["failed"] == []


def test_progress_lines_and_table_are_printed(run):
    out = run[0]
    steps = re.findall(r"^\[\s*(\d+)/(\d+)\] (\w+)", out, flags=re.M)
    assert [int(k) for k, _, _ in steps] == list(range(1, len(tour.Tour.STEPS) + 1))
    assert [name for _, _, name in steps] == list(tour.Tour.STEPS)
    table = out[out.index("technique"):]
    for technique, models in EXPECTED.items():
        for model in models:
            assert re.search(rf"^{re.escape(technique)}\s+{re.escape(model)}\s", table, flags=re.M), (technique, model)
    assert "emulated" in table and tour.EMULATION_FOOTNOTE in out     # the footnote under the table
    assert re.search(r"quality bars .*: \d+ met, \d+ not met", out)


def test_json_rows_have_exactly_the_keys_and_types(run):
    payload = run[1]
    for row in payload["rows"]:
        assert tuple(row) == tour.ROW_KEYS
        assert isinstance(row["technique"], str) and isinstance(row["model"], str)
        assert isinstance(row["size_bytes"], int) and row["size_bytes"] > 0
        for key in ("accuracy", "baseline_accuracy"):
            assert isinstance(row[key], float) and 0.0 <= row[key] <= 1.0
            assert abs(row[key] * N_TEST - round(row[key] * N_TEST)) < 1e-6   # a count of the 360 test digits
        assert isinstance(row["latency_ms"], float) and math.isfinite(row["latency_ms"]) and row["latency_ms"] > 0
        assert isinstance(row["speedup"], float) and row["speedup"] > 0
    assert len(payload["details"]) == len(payload["rows"])
    machine = payload["machine"]
    assert machine["kernel_path"] in ("vnni", "portable") and machine["cores"] >= 1
    assert machine["numpy"] == np.__version__ and machine["batch"] == tour.BATCH
    for key in ("cpu", "numba", "blas_threads", "numba_threads"):
        assert key in machine
    assert payload["fast"] is True


def test_speedup_is_float_latency_over_latency(rows):
    for row in rows.values():
        base = float_row(rows, row)
        assert row["speedup"] == pytest.approx(base["latency_ms"] / row["latency_ms"], rel=1e-12)
        assert row["baseline_accuracy"] == base["accuracy"]
    for name in ("mlp", "cnn", "tiny_transformer"):
        assert rows[("fp32", name)]["speedup"] == 1.0


def test_float_rows_equal_an_independent_evaluation(rows, digits, pretrained_model):
    _, _, X_test, y_test = digits
    for name in ("mlp", "cnn", "tiny_transformer"):
        model = pretrained_model(name)
        with mc.no_grad():
            predicted = model(mc.Tensor(X_test)).data.argmax(axis=1)
        assert rows[("fp32", name)]["accuracy"] == np.mean(predicted == y_test)
        assert rows[("fp32", name)]["accuracy"] == mc.train.evaluate(model, (X_test, y_test))
        stored = sum(p.data.nbytes for p in model.parameters()) + sum(
            np.asarray(b).nbytes for m in model.modules() for b in m._buffers.values() if b is not None)
        assert rows[("fp32", name)]["size_bytes"] == stored


def test_compressed_rows_equal_an_independent_rerun(rows, digits, pretrained_model):
    X_train, _, X_test, y_test = digits
    for name in ("mlp", "tiny_transformer"):
        dynamic = quant.quantize_dynamic(pretrained_model(name))
        assert rows[("dynamic int8", name)]["accuracy"] == mc.train.evaluate(dynamic, (X_test, y_test))
    prepared = quant.prepare(pretrained_model("mlp"), quant.per_channel_qconfig)
    for i in range(0, 512, 128):                                  # the tour's calibration: 4 x 128 training rows
        prepared(mc.Tensor(X_train[i:i + 128]))
    static = quant.convert(prepared)
    assert rows[("static int8", "mlp")]["accuracy"] == mc.train.evaluate(static, (X_test, y_test))
    arrays = {id(a): np.asarray(a) for m in static.modules()
              for a in [*vars(m).values(), *m._buffers.values(), *(p.data for p in m._parameters.values())]
              if isinstance(a, np.ndarray)}.values()
    assert sum(a.size for a in arrays if a.dtype == np.int8 and a.ndim == 2) == 64 * 128 + 128 * 64 + 64 * 10
    assert rows[("static int8", "mlp")]["size_bytes"] == sum(a.nbytes for a in arrays)
    fused, _ = mc.graph.optimize(pretrained_model("cnn"), X_test[:8])
    assert rows[("graph fusion", "cnn")]["accuracy"] == mc.train.evaluate(fused, (X_test, y_test))


# ---- the issues' bars, on the tour's own (fast) table -----------------------------------------------------
INT8_ROWS = [("dynamic int8", "mlp"), ("dynamic int8", "tiny_transformer"), ("static int8", "mlp"),
             ("static int8", "cnn")]


@pytest.mark.parametrize("key", INT8_ROWS)
def test_int8_rows_are_at_most_0_3x_their_float_bytes(rows, key):
    row = rows[key]
    assert row["size_bytes"] <= 0.3 * float_row(rows, row)["size_bytes"]


def drop(row):
    return 100 * (row["baseline_accuracy"] - row["accuracy"])


def test_accuracy_bars(rows, run):
    for key in INT8_ROWS:
        assert drop(rows[key]) <= 0.5, key
    for name in ("mlp", "cnn", "tiny_transformer"):
        assert abs(drop(rows[("bf16 autocast", name)])) <= 0.2
    assert drop(rows[("qat int4", "mlp")]) <= 1.0
    assert drop(rows[("agp 90% csr", "mlp")]) <= 1.0
    assert drop(rows[("2:4", "mlp")]) <= 0.5
    assert drop(rows[("channel 50% shrunk", "cnn")]) <= 1.0
    assert drop(rows[("group lasso shrunk", "cnn")]) <= 1.0
    assert drop(rows[("autotune 1%", "cnn")]) <= 100 * 0.01 * rows[("fp32", "cnn")]["accuracy"] + 1e-9
    assert rows[("student + kd", "mlp/4")]["accuracy"] > rows[("student, no teacher", "mlp/4")]["accuracy"]
    details = dict(zip([(r["technique"], r["model"]) for r in run[1]["rows"]], run[1]["details"]))
    zeroed = int(re.search(r"(\d+)% filters zeroed", details[("group lasso shrunk", "cnn")]).group(1))
    assert zeroed >= 30
    fewer = float(re.search(r"([\d.]+)x fewer params", details[("channel 50% shrunk", "cnn")]).group(1))
    assert fewer >= 2.0
    assert re.search(r"sparsity (9\d\.\d)%", details[("agp 90% csr", "mlp")])


# ---- pieces, in process ----------------------------------------------------------------------------------
def test_format_table_shows_delta_size_ratio_and_speedup():
    rows = [tour.Row("fp32", "mlp", 0.98, 0.98, 1000, 2.0, 1.0),
            tour.Row("static int8", "mlp", 0.975, 0.98, 250, 0.5, 4.0)]
    lines = tour.format_table(rows, ["", "note"]).splitlines()
    assert lines[0].split()[:4] == ["technique", "model", "accuracy", "Δ"]
    assert "-0.50" in lines[3] and "0.25x" in lines[3] and "4.00x" in lines[3] and lines[3].endswith("note")
    assert "+0.00" in lines[2] and "1.00x" in lines[2]


def test_check_bars_flags_a_failing_and_a_missing_row():
    rows = [tour.Row("fp32", "mlp", 0.98, 0.98, 1000, 1.0, 1.0),
            tour.Row("static int8", "mlp", 0.974, 0.98, 290, 0.5, 2.0),      # drop 0.6 pt: over the 0.5 bar
            tour.Row("dynamic int8", "mlp", 0.98, 0.98, 310, 2.0, 0.5)]     # 0.31x bytes, slower than float
    bars = {text: ok for ok, text in tour.check_bars(rows, {})}
    assert bars["static int8 mlp: drop +0.60 pt <= 0.5"] is False
    assert bars["static int8 mlp: bytes 0.290x float <= 0.3x"] is True
    assert bars["dynamic int8 mlp: bytes 0.310x float <= 0.3x"] is False
    assert bars["dynamic int8 mlp: speed-up 0.50x > 1"] is False
    assert bars["static int8 cnn: row missing"] is False
    assert bars["qat int4 mlp: row missing"] is False
    assert "FAIL" in tour.format_bars(tour.check_bars(rows, {}))


def test_time_round_robin_calls_each_model_twice_per_round():
    calls = []
    models = [lambda x, k=k: calls.append(k) for k in range(3)]
    times = tour.time_round_robin(models, np.zeros((2, 64), dtype=np.float32), repeats=4)
    assert len(times) == 3 and all(t >= 0 and math.isfinite(t) for t in times)
    assert calls == [0, 0, 1, 1, 2, 2] * 4     # in turns: untimed + timed call each


def test_graph_size_counts_each_parameter_array_once(pretrained_model, digits):
    model = pretrained_model("cnn")
    fused, _ = mc.graph.optimize(model, digits[2][:8])
    arrays = {id(a): a for node in fused.graph.nodes for a in node.params.values()}
    assert mc.report.model_size_bytes(fused) == sum(a.nbytes for a in arrays.values()) > 0
    # BatchNorm folded away: fewer bytes than the float model, which keeps gamma, beta and running stats
    assert mc.report.model_size_bytes(fused) < mc.report.model_size_bytes(model)


def test_tour_leaves_the_random_generator_as_it_was(monkeypatch):
    monkeypatch.setattr(tour.Tour, "STEPS", ("distillation",))       # one cheap step that seeds and draws
    mc.manual_seed(123)
    t = tour.Tour(fast=True, out=io.StringIO())
    t.floats["mlp"], t.base_acc["mlp"] = mc.models.mlp().eval(), 0.1   # an untrained teacher: only the rng matters
    expected = mc.core.rng().bit_generator.state
    t.run()
    assert [row.technique for row in (r for r, _, _ in t.entries)] == ["student, no teacher", "student + kd"]
    assert mc.core.rng().bit_generator.state == expected


def test_json_path_in_a_missing_folder_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="json_path=.*does not exist"):
        tour.main(json_path=str(tmp_path / "no" / "such" / "tour.json"), fast=True)


def test_cli_reports_a_bad_json_folder_without_a_traceback(tmp_path, capsys):
    from minicompress import cli
    code = cli.main(["tour", "--json", str(tmp_path / "missing" / "out.json")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and "Traceback" not in err
