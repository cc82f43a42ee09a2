"""`python -m minicompress tour [--json PATH] [--fast]`: every technique of the course on the digits models,
in one table measured in one run.

The zoo's MLP, CNN and tiny transformer are trained on the canonical split (`mc.models.pretrained`: the first
run trains them, later runs load them from the cache); each technique starts from one of them, and every
row is then measured the same way, on the same machine, in the same process:

    accuracy      mc.train.evaluate(model, (X_test, y_test)) on the 360 test digits (1 digit = 0.28 pt)
    Δ pt          100 · (accuracy - baseline_accuracy): against the float model the row started from
    size_bytes    every array the model stores (mc.report.model_size_bytes; CSR rows: data + indices + indptr;
                  a traced graph: its nodes' parameters)
    latency_ms    best of R forward passes on one batch of BATCH test rows (no_grad). The rows that started
                  from the same float model are timed in turns with it (float, a, b, ..., float, a, b, ...),
                  so a burst of load on a shared machine hits them alike
    speedup       latency of the float row / latency of this row

The techniques, in the order of the course deck:

    fp32                 the three float baselines
    bf16 autocast        BF16 inference, emulated: GEMM inputs rounded to BF16, FP32 accumulation
    dynamic int8         int8 per-channel weights, activation scale measured per batch, float output
    static int8          int8 per-channel weights, calibrated uint8 activations, integer-only layers
    ptq int4, qat int4   4-bit weights and activations: calibrated only, and quantization-aware trained
    agp 90% csr          unstructured gradual pruning (Zhu & Gupta 2017) with fine-tuning; Linear weights in CSR
    2:4                  N:M sparsity fine-tuned with the pattern locked, stored compressed (prune.NMSparseLinear)
    channel 50% shrunk   half of the conv filters pruned gradually, then physically removed (prune.shrink)
    group lasso shrunk   proximal group lasso (Wen et al. 2016) until 35 % of the filters are exactly zero,
                         then those filters locked, the rest fine-tuned, and the network shrunk
    student, no teacher  a quarter-width MLP student that sees only 50 labels ...
    student + kd         ... and the same student that also learns the teacher's soft labels on the other
                         training images (Hinton et al. 2015): the setting where distillation matters
    graph fusion         trace, fold BatchNorm into the convs, fuse conv+ReLU (mc.graph.optimize), FP32
    autotune 1%          accuracy-aware quantization tuning with a 1 % relative goal (mc.tune.autotune)

Nothing global is changed: BLAS and Numba threads are left as they are (the JSON's `machine` says how many).
"""
import copy
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass

import numpy as np

from .. import data, distill, graph, kernels, models, precision, prune, quant, train, tune
from ..core import Tensor, manual_seed, no_grad, rng
from ..nn import Conv2d
from ..optim import SGD
from ..report.size import model_size_bytes

BATCH = 256                # rows of the inference batch every latency is measured on
ZOO = ("mlp", "cnn", "tiny_transformer")
ROW_KEYS = ("technique", "model", "accuracy", "baseline_accuracy", "size_bytes", "latency_ms", "speedup")

# Training budgets (epochs) of the full tour and of --fast, and the timing rounds. An epoch costs ~10 ms
# for the MLP and ~0.15 s for the CNN on one core, so most budgets are the same in both modes.
BUDGETS = {
    False: dict(qat=4, agp=30, nm=3, channel=6, lasso_max=10, lasso_finetune=6, distill=20, repeats=15),
    True: dict(qat=2, agp=30, nm=3, channel=4, lasso_max=10, lasso_finetune=4, distill=20, repeats=5),
}
# Per-layer AGP targets of the MLP, 90.1 % overall (benchmarks/pruning.py, from tutorial 06's sensitivity scan:
# the first layer is the sensitive one).
MLP_AGP_TARGETS = {"0": 0.85, "2": 0.96, "4": 0.8}
LASSO_STRENGTH, LASSO_LR, LASSO_TARGET = 0.2, 0.1, 0.35   # lambda, plain-SGD lr, zeroed fraction to reach
DISTILL_LABELS_PER_CLASS, STUDENT_WIDTH = 5, 0.25

EMULATION_FOOTNOTE = ("bf16 rows are emulated in NumPy (GEMM inputs rounded to BF16, FP32 storage and "
                      "accumulation): they cost time and save no bytes here; BF16 hardware halves both.")


@dataclass
class Row:
    technique: str
    model: str               # a zoo name; "mlp/4" is a quarter-width student of the MLP
    accuracy: float
    baseline_accuracy: float
    size_bytes: int
    latency_ms: float = float("nan")
    speedup: float = float("nan")


# ---- helpers -------------------------------------------------------------------------------------------
def finetune(model, train_data, epochs, lr, callbacks=(), seed=0):
    """AdamW, cosine-annealed, no weight decay, label smoothing 0.1 (the zoo's recipe, own lr and epochs)."""
    manual_seed(seed)
    recipe = train.Recipe(epochs=epochs, lr=lr, batch_size=64, weight_decay=0.0, label_smoothing=0.1)
    train.fit(model, train_data, recipe=recipe, callbacks=list(callbacks), verbose=False)
    return model.eval()


def calibrate(prepared, X, batches=4, batch_size=128):
    """Static-PTQ calibration: run the first batches * batch_size training rows through the prepared model."""
    with no_grad():
        for i in range(batches):
            prepared(Tensor(X[i * batch_size:(i + 1) * batch_size]))
    return prepared


class StopAtZeroFraction:
    """fit callback: stop once the group lasso has zeroed at least `target` of its groups."""

    def __init__(self, lasso, target):
        self.lasso, self.target = lasso, target

    def on_step_end(self, state):
        if self.lasso.zero_fraction() >= self.target:
            state.stop_training = True


def time_round_robin(models, x, repeats):
    """Best forward time (ms) of each model on x; the models take turns for `repeats` rounds.

    In each turn a model runs once untimed, then once timed: the untimed call absorbs the switch from the
    model before (its thread pool still spinning, the caches holding its weights)."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    best = [float("inf")] * len(models)
    with no_grad():
        for _ in range(repeats):
            for k, model in enumerate(models):
                model(x)
                start = time.perf_counter()
                model(x)
                best[k] = min(best[k], (time.perf_counter() - start) * 1e3)
    return best


# ---- the tour -------------------------------------------------------------------------------------------
class Tour:
    """Runs the steps in order; keeps (row, model, float model's name) and a detail line per row."""

    STEPS = ("baselines", "bf16", "dynamic_int8", "static_int8", "int4", "agp", "two_four", "channel",
             "group_lasso", "distillation", "fusion", "autotune", "latencies")

    def __init__(self, fast=False, out=None):
        self.fast, self.out = bool(fast), sys.stdout if out is None else out
        self.budget = BUDGETS[self.fast]
        self.X, self.y, self.Xt, self.yt = data.digits_split()
        self.entries, self.details = [], []
        self.measured = {}     # (technique, model) -> {quantity: value} that the bars need beyond the row
        self.floats, self.base_acc = {}, {}
        self.failed = []

    def log(self, message):
        print(message, file=self.out, flush=True)

    def evaluate(self, model):
        return train.evaluate(model, (self.Xt, self.yt))

    def add(self, technique, name, model, baseline, detail="", **measured):
        row = Row(technique, name, float(self.evaluate(model)), float(self.base_acc[baseline]),
                  model_size_bytes(model))
        self.measured[(technique, name)] = measured
        self.entries.append((row, model, baseline))
        self.details.append(detail)

    def run(self):
        """Every step in order; the library's random generator is restored afterwards (the steps seed it)."""
        saved_rng_state = rng().bit_generator.state
        try:
            return self._run_steps()
        finally:
            rng().bit_generator.state = saved_rng_state

    def _run_steps(self):
        start, cpu_start = time.perf_counter(), time.process_time()
        for k, step in enumerate(self.STEPS, 1):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                getattr(self, step)()
                status = ""
            except Exception:  # report it, keep going: the other rows are still worth having
                traceback.print_exc()
                self.failed.append(step)
                status = "  FAILED (traceback above)"
            self.log(f"[{k:2d}/{len(self.STEPS)}] {step:<13} {time.perf_counter() - t0:6.1f} s "
                     f"(cpu {time.process_time() - c0:5.1f} s){status}")
        self.seconds, self.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        return [row for row, _, _ in self.entries]

    # -- the steps
    def baselines(self):
        for name in ZOO:
            if not os.path.exists(models.cache_path(name)):
                self.log(f"        training {name} (first run with this code; cached afterwards) ...")
            model = models.pretrained(name)
            self.floats[name], self.base_acc[name] = model, self.evaluate(model)
            self.add("fp32", name, model, name, "mc.models.pretrained")

    def bf16(self):
        for name in ZOO:
            self.add("bf16 autocast", name, precision.LowPrecision(self.floats[name], "bf16"), name, "emulated *")

    def dynamic_int8(self):
        # the transformer's layers are narrow (d=32): one weight scale per layer keeps it smallest
        for name, qconfig, scheme in (("mlp", quant.default_dynamic_qconfig, "per-channel"),
                                      ("tiny_transformer", quant.per_tensor_dynamic_qconfig, "per-tensor")):
            self.add("dynamic int8", name, quant.quantize_dynamic(self.floats[name], qconfig), name,
                     f"weights {scheme}, activations per batch")

    def static_int8(self):
        for name in ("mlp", "cnn"):
            prepared = calibrate(quant.prepare(self.floats[name], quant.per_channel_qconfig), self.X)
            self.add("static int8", name, quant.convert(prepared), name, "weights per-channel, integer-only")

    def int4(self):
        prepared = calibrate(quant.prepare(self.floats["mlp"], quant.int4_qconfig), self.X)
        self.add("ptq int4", "mlp", quant.convert(prepared), "mlp", "calibrated only; int4 weights two per byte")
        manual_seed(0)
        qat = quant.prepare_qat(self.floats["mlp"], quant.int4_qat_qconfig)
        epochs = self.budget["qat"]
        train.fit(qat, (self.X, self.y), recipe=train.Recipe(epochs=epochs, lr=1e-3, weight_decay=0.0),
                  verbose=False)
        self.add("qat int4", "mlp", quant.convert(qat), "mlp", f"{epochs} epochs of QAT")

    def agp(self):
        model = copy.deepcopy(self.floats["mlp"])
        epochs = self.budget["agp"]
        steps = epochs * -(-len(self.X) // 64)
        schedule = prune.make_schedule("agp", begin_step=0, end_step=steps // 2, frequency=10)
        pruner = prune.Pruner(model, MLP_AGP_TARGETS, schedule=schedule)
        finetune(model, (self.X, self.y), epochs, 2e-2, [pruner])
        sparsity = pruner.report()[-1]["sparsity"]
        self.add("agp 90% csr", "mlp", prune.sparsify_linears(model), "mlp",
                 f"sparsity {sparsity:.1%}, {epochs} epochs; CSR inference", sparsity=float(sparsity))

    def two_four(self):
        model = copy.deepcopy(self.floats["mlp"])
        pruner = prune.Pruner(model, None, "2:4").prune()
        epochs = self.budget["nm"]
        finetune(model, (self.X, self.y), epochs, 1e-3, [pruner.lock()])
        self.add("2:4", "mlp", prune.compress_n_of_m(model, 2, 4), "mlp",
                 f"pattern locked, {epochs} epochs; kept values + 2-bit positions")

    def channel(self):
        model = copy.deepcopy(self.floats["cnn"])
        convs = [n for n, m in model.named_modules() if isinstance(m, Conv2d)]
        epochs = self.budget["channel"]
        steps = epochs * -(-len(self.X) // 64)
        schedule = prune.make_schedule("agp", begin_step=0, end_step=max(1, int(0.4 * steps)), frequency=5)
        pruner = prune.Pruner(model, 0.5, "channel", layers=convs, schedule=schedule)
        finetune(model, (self.X, self.y), epochs, 2e-3, [pruner])
        small = prune.shrink(model).eval()
        self.add("channel 50% shrunk", "cnn", small, "cnn", f"AGP, {epochs} epochs; " + self._widths(small, convs),
                 fewer_params=self._fewer_params(small))

    def group_lasso(self):
        model = copy.deepcopy(self.floats["cnn"])
        convs = [n for n, m in model.named_modules() if isinstance(m, Conv2d)]
        lasso = prune.GroupLasso(model, LASSO_STRENGTH, "channel", layers=convs)
        manual_seed(0)
        history = train.fit(model, (self.X, self.y), epochs=self.budget["lasso_max"],
                            optimizer=SGD(model.parameters(), lr=LASSO_LR),
                            callbacks=[lasso, StopAtZeroFraction(lasso, LASSO_TARGET)], verbose=False)
        zeroed = lasso.zero_fraction()
        lock = prune.Pruner.lock_pattern(model, layers=convs, pattern="channel")
        epochs = self.budget["lasso_finetune"]
        finetune(model, (self.X, self.y), epochs, 2e-3, [lock])
        small = prune.shrink(model).eval()
        self.add("group lasso shrunk", "cnn", small, "cnn",
                 f"{zeroed:.0%} filters zeroed in {len(history.epoch)} ep, +{epochs} ep; " + self._widths(small, convs),
                 zeroed_filters=float(zeroed), fewer_params=self._fewer_params(small))

    def _fewer_params(self, small):
        return prune.count_params(self.floats["cnn"]) / prune.count_params(small)

    def _widths(self, small, convs):
        widths = [small.get_submodule(n).out_channels for n in convs]
        return f"filters {widths}, {self._fewer_params(small):.1f}x fewer params"

    def distillation(self):
        teacher, epochs = self.floats["mlp"], self.budget["distill"]
        manual_seed(0)
        labelled = np.concatenate([rng().choice(np.flatnonzero(self.y == c), DISTILL_LABELS_PER_CLASS, replace=False)
                                   for c in range(10)])
        rest = np.setdiff1d(np.arange(len(self.y)), labelled)
        manual_seed(0)
        alone = distill.smaller_mlp(teacher, width=STUDENT_WIDTH)
        train.fit(alone, (self.X[labelled], self.y[labelled]), epochs=epochs * len(self.X) // len(labelled),
                  verbose=False)   # the same number of steps as the distilled student
        self.add("student, no teacher", "mlp/4", alone.eval(), "mlp", f"{len(labelled)} labels only")
        manual_seed(0)
        student = distill.smaller_mlp(teacher, width=STUDENT_WIDTH)
        rows = np.concatenate([labelled, rest])
        targets = np.concatenate([self.y[labelled], np.full(len(rest), distill.UNLABELLED)])
        train.fit(student, (self.X[rows], targets), epochs=epochs, callbacks=[distill.Distiller(teacher, 4.0, 0.9)],
                  verbose=False)
        self.add("student + kd", "mlp/4", student.eval(), "mlp",
                 f"{len(labelled)} labels + soft labels on {len(rest)} images")

    def fusion(self):
        fused, report = graph.optimize(self.floats["cnn"], self.Xt[:8])
        self.add("graph fusion", "cnn", fused, "cnn", f"ops {report.ops_before} -> {report.ops_after}: BN folded, "
                                                      "conv+relu fused")

    def autotune(self):
        calib = [self.X[i:i + 128] for i in range(0, 256, 128)]
        result = tune.autotune(self.floats["cnn"], self.evaluate, calib, tolerable_loss=0.01, measure_latency=False)
        chosen = result.history[result.best_trial].describe() if result.best_trial is not None else "-"
        self.add("autotune 1%", "cnn", result.model, "cnn",
                 f"goal {'met' if result.met else 'NOT met'}, {result.trials} trial(s): {chosen}")

    def latencies(self):
        for baseline in self.floats:
            group = [(row, model) for row, model, b in self.entries if b == baseline]
            times = time_round_robin([model for _, model in group], self.Xt[:BATCH], self.budget["repeats"])
            for (row, _), ms in zip(group, times):
                row.latency_ms, row.speedup = ms, times[0] / ms     # group[0] is the float row


# ---- output ---------------------------------------------------------------------------------------------
def format_table(rows, details=None):
    """The table: accuracy in %, Δ in points, size in bytes and as a fraction of the float row's, latency, speed-up."""
    details = [""] * len(rows) if details is None else details
    float_size = {r.model: r.size_bytes for r in rows if r.technique == "fp32"}
    head = (f"{'technique':<19} {'model':<16} {'accuracy':>8} {'Δ pt':>6} {'bytes':>6} {'size':>5} "
            f"{'ms':>7} {'speed-up':>8}  detail")
    lines = [head, "-" * len(head)]
    for row, detail in zip(rows, details):
        base_size = float_size.get(row.model.split("/")[0])
        ratio = f"{row.size_bytes / base_size:4.2f}x" if base_size else "  -  "
        lines.append(f"{row.technique:<19} {row.model:<16} {100 * row.accuracy:7.2f}% "
                     f"{100 * (row.accuracy - row.baseline_accuracy):+6.2f} {row.size_bytes:>6d} {ratio:>5} "
                     f"{row.latency_ms:7.2f} {row.speedup:7.2f}x  {detail}")
    return "\n".join(lines)


def _drop(row):
    return 100 * (row.baseline_accuracy - row.accuracy)


def check_bars(rows, measured):
    """The quality bars of the quantization, pruning, precision and tour issues, checked on this table:
    a list of (ok, text). A bar whose row is missing is reported as failed."""
    by_key = {(r.technique, r.model): r for r in rows}
    float_size = {r.model: r.size_bytes for r in rows if r.technique == "fp32"}
    bars = []

    def bar(key, what, value, ok, limit):
        bars.append((bool(ok), f"{key[0]} {key[1]}: {what} {value} {limit}"))

    for key in [("dynamic int8", "mlp"), ("dynamic int8", "tiny_transformer"), ("static int8", "mlp"),
                ("static int8", "cnn")]:
        row = by_key.get(key)
        if row is None:
            bars.append((False, f"{key[0]} {key[1]}: row missing"))
            continue
        bar(key, "drop", f"{_drop(row):+.2f} pt", _drop(row) <= 0.5, "<= 0.5")
        ratio = row.size_bytes / float_size[row.model]
        bar(key, "bytes", f"{ratio:.3f}x float", ratio <= 0.3, "<= 0.3x")
        bar(key, "speed-up", f"{row.speedup:.2f}x", row.speedup > 1, "> 1")
    limits = [(("qat int4", "mlp"), 1.0), (("agp 90% csr", "mlp"), 1.0), (("2:4", "mlp"), 0.5),
              (("channel 50% shrunk", "cnn"), 1.0), (("group lasso shrunk", "cnn"), 1.0)]
    limits += [(("bf16 autocast", name), 0.2) for name in ZOO]
    for key, limit in limits:
        row = by_key.get(key)
        if row is None:
            bars.append((False, f"{key[0]} {key[1]}: row missing"))
        else:
            drop = abs(_drop(row)) if key[0] == "bf16 autocast" else _drop(row)
            bar(key, "drop" if key[0] != "bf16 autocast" else "|Δ|", f"{drop:+.2f} pt", drop <= limit, f"<= {limit}")
    for key, quantity, limit, text in [(("agp 90% csr", "mlp"), "sparsity", 0.9, "sparsity >= 90%"),
                                       (("channel 50% shrunk", "cnn"), "fewer_params", 2.0, "params >= 2x fewer"),
                                       (("group lasso shrunk", "cnn"), "zeroed_filters", 0.3, "filters zeroed >= 30%")]:
        value = measured.get(key, {}).get(quantity)
        bar(key, text.split(" >=")[0], "missing" if value is None else f"{value:.3g}",
            value is not None and value >= limit, f">= {limit:g}")
    kd, alone = by_key.get(("student + kd", "mlp/4")), by_key.get(("student, no teacher", "mlp/4"))
    bars.append((bool(kd and alone and kd.accuracy > alone.accuracy),
                 "student + kd mlp/4: beats the student without teacher" if kd and alone else "student rows missing"))
    return bars


def format_bars(bars):
    failed = sum(not ok for ok, _ in bars)
    lines = [f"quality bars (issues 3, 4, 5, 9): {len(bars) - failed} met, {failed} not met"]
    lines += [f"  {'ok  ' if ok else 'FAIL'}  {text}" for ok, text in bars]
    return "\n".join(lines)


def blas_threads():
    """The thread count NumPy's OpenBLAS reports (ctypes), else OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, else None."""
    import ctypes
    import glob
    site = os.path.dirname(os.path.dirname(np.__file__))
    libraries = (glob.glob(os.path.join(site, "scipy_openblas64", "lib", "*openblas*.so*"))
                 + glob.glob(os.path.join(site, "numpy.libs", "*openblas*.so*")))
    for path in libraries:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
            if hasattr(library, symbol):
                return int(getattr(library, symbol)())
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numba_threading_layer():
    import numba
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run in this process
        return None


def machine_info():
    """CPU, cores, versions, the kernel path and the thread settings the latencies were measured with."""
    import numba
    environment = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                                              "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER",
                                              "MINICOMPRESS_PORTABLE_KERNELS") if k in os.environ}
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "kernel_path": kernels.kernel_path(),
            "blas_threads": blas_threads(), "numba_threads": numba.config.NUMBA_NUM_THREADS,
            "numba_threading_layer": numba_threading_layer(), "environment": environment,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "batch": BATCH}


def main(json_path=None, fast=False, out=None):
    """Run the tour, print progress and the table to `out` (stdout), write `json_path` if given.
    Returns 0, or 1 if a step failed (its traceback is printed and its rows are missing)."""
    if json_path is not None:
        folder = os.path.dirname(os.path.abspath(json_path))
        if not os.path.isdir(folder):
            raise ValueError(f"tour: cannot write json_path={json_path!r}: the folder {folder!r} does not exist")
    tour = Tour(fast=fast, out=out)
    tour.log(f"minicompress tour{' --fast' if fast else ''}: {len(tour.Xt)} test digits, latency at batch {BATCH}, "
             f"best of {tour.budget['repeats']} (kernels: {kernels.kernel_path()}, BLAS threads: {blas_threads()})")
    rows = tour.run()
    tour.log("\n" + format_table(rows, tour.details))
    tour.log(f"* {EMULATION_FOOTNOTE}")
    bars = check_bars(rows, tour.measured)
    tour.log(format_bars(bars))
    tour.log(f"{tour.seconds:.0f} s (cpu {tour.cpu_seconds:.0f} s); the rows of one float model were timed in turns "
             f"with it.")
    if tour.failed:
        tour.log(f"FAILED steps: {', '.join(tour.failed)}")
    if json_path is not None:
        payload = {"rows": [{key: asdict(row)[key] for key in ROW_KEYS} for row in rows], "details": tour.details,
                   "notes": [EMULATION_FOOTNOTE], "failed": tour.failed,
                   "bars": [{"ok": ok, "bar": text} for ok, text in bars], "fast": tour.fast,
                   "seconds": tour.seconds, "machine": machine_info()}
        with open(json_path, "w") as f:
            json.dump(payload, f, indent=1)
        tour.log(f"wrote {json_path}")
    return 1 if tour.failed else 0
