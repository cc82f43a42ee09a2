"""The course figures, each made from the library's own code: `python -m minicompress figures`.

    make_figures(out_dir="figures", fast=False, only=None) -> {name: path}
    fig_<name>(out_dir, fast) -> path of out_dir/<name>.png            (one small function per figure)

    name                what it shows                                             library code it runs
    quant_grid          a float ramp, its 8-/4-bit affine grid, the error sawtooth  quant.calc_qparams, quantize
    observer_ranges     clipping ranges of 5 observers on Student-t samples        quant.*Observer
    bits_accuracy       MLP accuracy vs bit width, PTQ (2 weight schemes) vs QAT   quant.prepare / prepare_qat
    prune_histograms    MLP layer-0 weights before / after 90 % magnitude pruning  prune.magnitude_mask
    sparsity_accuracy   sparsity vs accuracy: one-shot, one-shot + FT, AGP + FT    prune.Pruner, make_schedule
    sparsity_patterns   unstructured, 2:4, 4x1, 2x2, channel masks on a 16x16 W    prune.magnitude_mask
    kd_temperature      softmax(z/T) of one teacher and student accuracy vs T      distill.Distiller
    bf16_error          relative rounding error of BF16 and FP16 over 16 decades   precision.round_to_bf16
    graph_fusion        the CNN's graph before / after the fusion passes           graph.trace, optimize
    kernel_ladder       GOP/s of NumPy fp32 and each INT8 kernel of the ladder     kernels.gemm_*

Every number drawn is computed in the run (trained models come from `mc.models.pretrained`; nothing else
is cached). `fast=True` shrinks the training and timing budgets (the whole set in well under 20 s idle).
Each PNG carries a caption line naming the function that made it and the library functions it shows.
Plotting uses matplotlib's Agg backend (no display needed), 110 dpi.
"""
import os
import textwrap
import time

import numpy as np

from .latency import best_seconds

DPI = 110
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


# ---- plumbing -------------------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _caption(fig, name, source):
    """A grey caption line (wrapped to the figure's width) naming the figure function and the library code;
    returns the height fraction it takes at the bottom."""
    width_in, height_in = fig.get_size_inches()
    lines = textwrap.wrap(f"minicompress.report.figures.fig_{name}  ·  {source}", int(width_in * 18))
    fig.text(0.005, 0.005, "\n".join(lines), fontsize=7, color="#555555", ha="left", va="bottom")
    return (0.02 + 0.13 * len(lines)) / height_in


def _save(fig, out_dir, name, source):
    """Write `out_dir/name.png` (tight layout above the caption line)."""
    bottom = _caption(fig, name, source)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    path = os.path.join(out_dir, f"{name}.png")
    fig.savefig(path, dpi=DPI)
    _plt().close(fig)
    return path


def _digits():
    from .. import data
    return data.digits_split()


def _accuracy(model, X, y):
    from .. import train
    return train.evaluate(model, (X, y))


# ---- 1. quantization grid and error ---------------------------------------------------------------------

def fig_quant_grid(out_dir, fast=False):
    """x -> x̂ = (clamp(rint(x/s) + z) - z)·s for a ramp calibrated on [-1, 1.5]; |x̂ - x| <= s/2 inside."""
    from .. import quant
    plt = _plt()
    lo, hi = -1.0, 1.5
    x = np.linspace(-1.4, 1.9, 4001, dtype=np.float32)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    ax = axes[0]
    ax.plot(x, x, color="#999999", lw=1, label="x (float)")
    results = {}
    for bits, color in ((4, COLORS[1]), (8, COLORS[0])):
        qmin, qmax = quant.qrange(bits, signed=False)
        scale, zp = quant.calc_qparams(lo, hi, qmin, qmax)
        x_hat = quant.dequantize(quant.quantize(x, scale, zp, qmin, qmax), scale, zp)
        results[bits] = (float(scale), int(zp), x_hat)
        ax.plot(x, x_hat, color=color, lw=1.2, label=f"x̂, {bits}-bit (s={float(scale):.4f}, z={int(zp)})")
    for a in axes:
        a.axvspan(x[0], lo, color="#f3d2d2", lw=0)
        a.axvspan(hi, x[-1], color="#f3d2d2", lw=0)
    ax.set_title("affine quantization of a ramp, range [-1, 1.5]")
    ax.set_xlabel("x")
    ax.set_ylabel("dequantized x̂")
    ax.legend(fontsize=8, loc="upper left")
    ax.text(hi + 0.03, -0.9, "clipped", fontsize=8, color="#a33")
    for ax, bits in ((axes[1], 4), (axes[2], 8)):
        scale, zp, x_hat = results[bits]
        err = x_hat - x
        ax.plot(x, err, color=COLORS[1] if bits == 4 else COLORS[0], lw=0.8, label="x̂ - x")
        ax.axhline(scale / 2, color="k", ls="--", lw=1, label=f"± s/2 = ± {scale / 2:.4f}")
        ax.axhline(-scale / 2, color="k", ls="--", lw=1)
        inside = (x >= lo) & (x <= hi)
        ax.set_ylim(-1.6 * scale, 1.6 * scale)
        ax.set_title(f"{bits}-bit error: max inside = {np.abs(err[inside]).max():.4f}")
        ax.set_xlabel("x")
        ax.set_ylabel("x̂ - x")
        ax.legend(fontsize=8, loc="lower left")
    return _save(fig, out_dir, "quant_grid", "mc.quant.qrange, calc_qparams, quantize, dequantize "
                 "(shaded: outside the calibrated range, values clip)")


# ---- 2. observers on a heavy-tailed distribution ---------------------------------------------------------

def fig_observer_ranges(out_dir, fast=False):
    """Each observer's chosen [lo, hi] on Student-t(3) samples, at 4 bits, with the resulting quantization MSE."""
    from .. import core, quant
    plt = _plt()
    core.manual_seed(0)
    x = core.rng().standard_t(3, size=20000 if fast else 50000).astype(np.float32)
    bits = 4
    qmin, qmax = quant.qrange(bits, signed=False)
    fig, ax = plt.subplots(figsize=(10, 4.8))
    ax.hist(x, bins=600, color="#bbbbbb", log=True)
    observers = (quant.MinMaxObserver, quant.PercentileObserver, quant.MSEObserver, quant.EntropyObserver,
                 quant.HistogramObserver)
    for k, (cls, color) in enumerate(zip(observers, COLORS)):
        obs = cls(dtype=f"quint{bits}")
        obs(x)
        scale, zp = obs.calculate_qparams()
        mse = float(np.mean((x - quant.dequantize(quant.quantize(x, scale, zp, qmin, qmax), scale, zp)) ** 2))
        lo, hi = (float(v) for v in obs.chosen_range())
        style = ("-", "--", "-.", ":", (0, (5, 1)))[k]
        ax.axvline(lo, color=color, ls=style, lw=1.6,
                   label=f"{cls.__name__:20s} [{lo:6.2f}, {hi:5.2f}]  MSE {mse:.4f}")
        ax.axvline(hi, color=color, ls=style, lw=1.6)
    span = float(x.max() - x.min())
    ax.set_xlim(float(x.min()) - 0.02 * span, float(x.max()) + 0.02 * span)
    ax.set_xlabel("x  (Student-t samples, 3 degrees of freedom)")
    ax.set_ylabel("count (log)")
    ax.set_title(f"observer ranges at {bits} bits (quint{bits}, affine) on {len(x)} heavy-tailed samples")
    ax.legend(fontsize=8, loc="upper right", prop={"family": "monospace", "size": 8})
    return _save(fig, out_dir, "observer_ranges", "mc.quant.*Observer(dtype='quint4'): .chosen_range(), "
                 ".calculate_qparams(); MSE = mean (x - x̂)²")


# ---- 3. accuracy vs bit width, PTQ vs QAT ----------------------------------------------------------------

def _ptq_qconfig(bits, per_channel):
    from .. import quant
    if per_channel:
        weight = quant.PerChannelMinMaxObserver.with_args(dtype=f"qint{bits}", qscheme="per_channel_symmetric",
                                                          ch_axis=0)
    else:
        weight = quant.MinMaxObserver.with_args(dtype=f"qint{bits}", qscheme="per_tensor_symmetric")
    return quant.QConfig(activation=quant.MinMaxObserver.with_args(dtype=f"quint{bits}"), weight=weight)


def _qat_qconfig(bits):
    from .. import quant
    return quant.QConfig(
        activation=quant.FakeQuantize.with_args(observer=quant.MovingAverageMinMaxObserver, dtype=f"quint{bits}"),
        weight=quant.FakeQuantize.with_args(observer=quant.PerChannelMinMaxObserver, dtype=f"qint{bits}",
                                            qscheme="per_channel_symmetric", ch_axis=0))


def fig_bits_accuracy(out_dir, fast=False):
    """Integer-model test accuracy of the MLP at 8/6/4/3/2 bits: static PTQ (per-tensor and per-channel
    weights, 512 calibration rows) vs QAT (per-channel, a short fine-tune from the float model)."""
    from .. import core, models, quant, train
    plt = _plt()
    X, y, Xt, yt = _digits()
    model = models.pretrained("mlp")
    base = _accuracy(model, Xt, yt)
    bit_widths = (8, 4, 2) if fast else (8, 6, 4, 3, 2)
    epochs = 1 if fast else 2
    curves = {"PTQ, per-tensor weights": [], "PTQ, per-channel weights": [], f"QAT ({epochs} epochs), per-channel": []}
    for bits in bit_widths:
        for per_channel, key in ((False, "PTQ, per-tensor weights"), (True, "PTQ, per-channel weights")):
            prepared = quant.prepare(model, _ptq_qconfig(bits, per_channel))
            prepared(core.Tensor(X[:512]))
            curves[key].append(_accuracy(quant.convert(prepared), Xt, yt))
        core.manual_seed(0)
        qat = quant.prepare_qat(model, _qat_qconfig(bits))
        train.fit(qat, (X, y), recipe=train.Recipe(epochs=epochs, lr=1e-3, weight_decay=0.0), verbose=False)
        curves[f"QAT ({epochs} epochs), per-channel"].append(_accuracy(quant.convert(qat), Xt, yt))
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.axhline(100 * base, color="#777777", ls="--", lw=1, label=f"float32 {100 * base:.1f} %")
    for (label, accs), color, marker in zip(curves.items(), COLORS, "sox"):
        ax.plot(bit_widths, 100 * np.array(accs), marker=marker, color=color, label=label)
        for b, a in zip(bit_widths, accs):
            if a < base - 0.01:                  # label the points that lost more than one point
                ax.annotate(f"{100 * a:.1f}", (b, 100 * a), textcoords="offset points", xytext=(6, -12),
                            fontsize=8, color=color)
    ax.set_xticks(bit_widths)
    ax.set_xlim(max(bit_widths) + 0.3, min(bit_widths) - 0.5)        # high bits on the left, room for labels
    ax.set_ylim(0, 103)
    ax.set_xlabel("bits (weights and activations)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("MLP on digits: integer model accuracy vs bit width")
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, out_dir, "bits_accuracy", "mc.quant.prepare / prepare_qat + mc.train.fit / convert; "
                 "activations quint<b> MinMax, weights qint<b> symmetric; 360 test images")


# ---- 4. weight histograms before / after pruning ---------------------------------------------------------

def fig_prune_histograms(out_dir, fast=False):
    """MLP layer 0 (128x64) weights before and after 90 % unstructured magnitude pruning (|w| < t -> 0)."""
    from .. import models, prune
    plt = _plt()
    w = models.pretrained("mlp")[0].weight.data
    mask = prune.magnitude_mask(w, 0.9)
    kept = w[mask]
    threshold = float(np.abs(kept).min())
    bins = np.linspace(float(w.min()), float(w.max()), 121)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharex=True)
    axes[0].hist(w.ravel(), bins=bins, color=COLORS[0])
    axes[0].set_title(f"before: {w.size} weights, dense")
    for t in (-threshold, threshold):
        axes[0].axvline(t, color="k", ls="--", lw=1)
    axes[0].text(threshold, axes[0].get_ylim()[1] * 0.9, f"  |w| = {threshold:.3f}\n  (90 % are smaller)",
                 fontsize=8, va="top")
    axes[1].hist(kept, bins=bins, color=COLORS[1], label=f"kept: {kept.size} nonzeros")
    axes[1].axvspan(-threshold, threshold, color="#eeeeee", lw=0,
                    label=f"pruned: {w.size - kept.size} weights set to exactly 0")
    axes[1].set_title("after one-shot 90 % magnitude pruning (zeros not drawn)")
    axes[1].legend(fontsize=8, loc="upper left")
    for ax in axes:
        ax.set_xlabel("weight value")
        ax.set_ylabel("count")
    return _save(fig, out_dir, "prune_histograms", "mc.prune.magnitude_mask(w, 0.9) on mc.models.pretrained('mlp')[0]")


# ---- 5. sparsity vs accuracy -----------------------------------------------------------------------------

def fig_sparsity_accuracy(out_dir, fast=False):
    """Test accuracy vs target sparsity: one-shot (no training), one-shot + fine-tune, AGP + fine-tune.

    Fine-tuning: the same epochs and recipe for both trained arms; AGP reaches the target at half way."""
    from .. import core, models, prune, train
    plt = _plt()
    X, y, Xt, yt = _digits()
    base = _accuracy(models.pretrained("mlp"), Xt, yt)
    sparsities = (0.5, 0.9) if fast else (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
    epochs = 1 if fast else 3
    steps = epochs * -(-len(X) // 64)
    recipe = train.Recipe(epochs=epochs, lr=1e-2, weight_decay=0.0, label_smoothing=0.1)
    arms = {"one-shot, no fine-tuning": [], f"one-shot + {epochs} epochs fine-tuning": [],
            f"AGP + {epochs} epochs fine-tuning": []}
    for s in sparsities:
        model = models.pretrained("mlp")
        pruner = prune.Pruner(model, s, scope="global").prune()
        arms["one-shot, no fine-tuning"].append(_accuracy(model, Xt, yt))
        core.manual_seed(0)
        train.fit(model, (X, y), recipe=recipe, callbacks=[pruner], verbose=False)
        arms[f"one-shot + {epochs} epochs fine-tuning"].append(_accuracy(model, Xt, yt))
        model = models.pretrained("mlp")
        pruner = prune.Pruner(model, s, scope="global",
                              schedule=prune.make_schedule("agp", begin_step=0, end_step=steps // 2, frequency=5))
        core.manual_seed(0)
        train.fit(model, (X, y), recipe=recipe, callbacks=[pruner], verbose=False)
        arms[f"AGP + {epochs} epochs fine-tuning"].append(_accuracy(model, Xt, yt))
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.axhline(100 * base, color="#777777", ls="--", lw=1, label=f"dense {100 * base:.1f} %")
    for (label, accs), color, marker in zip(arms.items(), COLORS, "sox"):
        ax.plot(100 * np.array(sparsities), 100 * np.array(accs), marker=marker, color=color, label=label)
    ax.set_xlabel("sparsity of the Linear weights (%), global magnitude threshold")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("MLP on digits: sparsity vs accuracy")
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, out_dir, "sparsity_accuracy", "mc.prune.Pruner(model, s, scope='global'), "
                 "make_schedule('agp', ...), mc.train.fit(callbacks=[pruner])")


# ---- 6. N:M and block masks ------------------------------------------------------------------------------

def fig_sparsity_patterns(out_dir, fast=False):
    """Masks of one 16x16 Gaussian weight: kept weights show |w|, pruned ones are white."""
    from .. import core, prune
    plt = _plt()
    core.manual_seed(0)
    w = core.rng().standard_normal((16, 16)).astype(np.float32)
    panels = [("dense |w|", np.ones_like(w, dtype=bool))]
    for pattern, sparsity in (("unstructured", 0.5), ("2:4", None), ("4x1", 0.5), ("2x2", 0.5), ("channel", 0.5)):
        mask = prune.magnitude_mask(w, sparsity, pattern)
        panels.append((f"{pattern}  ({100 * (1 - mask.mean()):.0f} % pruned)", mask))
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 7.4))
    fig.subplots_adjust(left=0.06, right=0.86, bottom=0.1, top=0.88, wspace=0.3, hspace=0.35)
    vmax = float(np.abs(w).max())
    for ax, (title, mask) in zip(axes.ravel(), panels):
        image = np.where(mask, np.abs(w), np.nan)
        im = ax.imshow(image, cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([0, 4, 8, 12])
        ax.set_yticks([0, 4, 8, 12])
        ax.set_xticks(np.arange(-0.5, 16, 4), minor=True)
        ax.set_yticks(np.arange(-0.5, 16, 4), minor=True)
        ax.grid(which="minor", color="#bbbbbb", lw=0.5)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("input column", fontsize=8)
        ax.set_ylabel("output row", fontsize=8)
    fig.colorbar(im, cax=fig.add_axes((0.89, 0.25, 0.02, 0.5)), label="|w| of kept weights (white = pruned)")
    fig.suptitle("pruning patterns on a 16x16 weight (Linear layout: rows = outputs)")
    # tight_layout does not handle a shared colorbar: caption, then save directly
    _caption(fig, "sparsity_patterns", "mc.prune.magnitude_mask(w, sparsity, pattern); 2:4 = keep 2 of every "
             "4 along the input; RxC = blocks of R output rows x C input columns")
    path = os.path.join(out_dir, "sparsity_patterns.png")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


# ---- 7. distillation temperature -------------------------------------------------------------------------

def fig_kd_temperature(out_dir, fast=False):
    """Left: softmax(z/T) of the teacher's logits for one test digit. Right: accuracy of a half-width student
    that sees 50 labelled + 150 unlabelled images, distilled at temperature T (α = 0.9), vs labels only."""
    from .. import core, distill, models, nn, train
    plt = _plt()
    X, y, Xt, yt = _digits()
    teacher = models.pretrained("mlp")
    with core.no_grad():
        logits = teacher(core.Tensor(Xt)).data
    index = int(np.flatnonzero(logits.argmax(axis=1) == yt)[0])     # the first test digit the teacher gets right
    z = logits[index:index + 1]
    temperatures = (1, 2, 4, 8)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    ax = axes[0]
    width = 0.8 / len(temperatures)
    for k, (T, color) in enumerate(zip(temperatures, COLORS)):
        p = nn.functional.softmax(core.Tensor(z / T), axis=-1).data[0]
        ax.bar(np.arange(10) + (k - 1.5) * width, p, width, color=color, label=f"T = {T}")
    ax.set_xticks(np.arange(10))
    ax.set_xlabel(f"class (test digit #{index}, label {int(yt[index])})")
    ax.set_ylabel("softmax(z / T)")
    ax.set_yscale("log")
    ax.set_title("the teacher's soft targets for one test digit")
    ax.legend(fontsize=8)

    seeds = (0,) if fast else (0, 1, 2)
    epochs = 8 if fast else 40
    r = np.random.default_rng(0)
    labelled = np.concatenate([r.choice(np.flatnonzero(y == c), 5, replace=False) for c in range(10)])
    unlabelled = r.choice(np.setdiff1d(np.arange(len(y)), labelled), 150, replace=False)
    rows = np.concatenate([labelled, unlabelled])
    partial = np.concatenate([y[labelled], np.full(len(unlabelled), distill.UNLABELLED)])

    def student_accuracy(data, callbacks, n_epochs, seed):
        core.manual_seed(seed)
        student = distill.smaller_mlp(teacher, width=0.5)
        train.fit(student, data, epochs=n_epochs, callbacks=callbacks, verbose=False)
        return _accuracy(student, Xt, yt)

    labels_only = [student_accuracy((X[labelled], y[labelled]), [], epochs * len(rows) // len(labelled), s)
                   for s in seeds]
    kd = [[student_accuracy((X[rows], partial), [distill.Distiller(teacher, float(T), 0.9)], epochs, s)
           for s in seeds] for T in temperatures]
    ax = axes[1]
    means, stds = 100 * np.mean(kd, axis=1), 100 * np.std(kd, axis=1)
    ax.errorbar(temperatures, means, yerr=stds, marker="o", color=COLORS[0], capsize=3,
                label=f"student + KD (50 labels + 150 unlabelled images), mean ± std of {len(seeds)} seed(s)")
    ax.axhline(100 * np.mean(labels_only), color=COLORS[3], ls="--", lw=1,
               label=f"student, 50 labels only: {100 * np.mean(labels_only):.1f} %")
    ax.axhline(100 * _accuracy(teacher, Xt, yt), color="#777777", ls=":", lw=1, label="teacher")
    ax.set_xscale("log", base=2)
    ax.set_xticks(temperatures)
    ax.set_xticklabels([str(T) for T in temperatures])
    ax.set_xlabel("temperature T")
    ax.set_ylabel("student test accuracy (%)")
    ax.set_title(f"student accuracy vs temperature ({epochs} epochs over 200 images)")
    ax.legend(fontsize=7, loc="center right", bbox_to_anchor=(1.0, 0.72))
    return _save(fig, out_dir, "kd_temperature", "mc.nn.functional.softmax(z / T); mc.distill.smaller_mlp, "
                 "Distiller(teacher, T, alpha=0.9) (label -100 = unlabelled: soft term only)")


# ---- 8. BF16 vs FP16 rounding error ----------------------------------------------------------------------

def fig_bf16_error(out_dir, fast=False):
    """|round(x) - x| / |x| for float32 x spread log-uniformly over [1e-9, 1e9], BF16 vs FP16, with the unit
    roundoffs 2^-8 (BF16: 8 significant bits) and 2^-11 (FP16: 11), FP16's subnormal and overflow regions."""
    from .. import core, precision
    plt = _plt()
    core.manual_seed(0)
    x = (10.0 ** core.rng().uniform(-9, 9, 4000 if fast else 20000)).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        rel_bf16 = np.abs(precision.round_to_bf16(x) - x) / x
        rel_fp16 = np.abs(precision.round_to_fp16(x) - x) / x
    floor = 1e-9  # exact values (relative error 0) drawn at the bottom of the log axis
    fig, ax = plt.subplots(figsize=(10, 4.8))
    fp16_plot = np.where(np.isfinite(rel_fp16), np.maximum(rel_fp16, floor), np.nan)
    ax.scatter(x, fp16_plot, s=2, color=COLORS[1], alpha=0.5, label="FP16 (round_to_fp16)")
    ax.scatter(x, np.maximum(rel_bf16, floor), s=2, color=COLORS[0], alpha=0.5, label="BF16 (round_to_bf16)")
    ax.axhline(2.0 ** -8, color=COLORS[0], ls="--", lw=1.2, label="2^-8: BF16 unit roundoff")
    ax.axhline(2.0 ** -11, color=COLORS[1], ls="--", lw=1.2, label="2^-11: FP16 unit roundoff")
    ax.axvspan(float(x.min()), 2.0 ** -14, color="#fbe5cc", lw=0, zorder=0,
               label="FP16 subnormal / underflow (< 2^-14)")
    ax.axvspan(65520.0, float(x.max()), color="#f3d2d2", lw=0, zorder=0,
               label="FP16 overflows to inf (>= 65520; not drawn)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 30)
    ax.set_xlabel("x (float32)")
    ax.set_ylabel("relative error |round(x) - x| / x")
    ax.set_title("rounding float32 to BF16 vs FP16 (round to nearest even)")
    ax.legend(fontsize=8, loc="lower center", ncol=3, markerscale=4)
    worst = float(rel_bf16.max())
    ax.text(1e-3, 2.0 ** -8 * 2.5, f"BF16 worst over the whole range: {worst:.2e} <= 2^-8 = {2.0 ** -8:.2e}",
            fontsize=8, color=COLORS[0])
    return _save(fig, out_dir, "bf16_error", "mc.precision.round_to_bf16, round_to_fp16 on "
                 f"{len(x)} log-uniform float32 values (exact results drawn at 1e-9)")


# ---- 9. graph before / after fusion ----------------------------------------------------------------------

def fig_graph_fusion(out_dir, fast=False):
    """The zoo CNN traced into a Graph, and the same graph after optimize's passes (BN folded, ReLU fused)."""
    from .. import graph, models
    plt = _plt()
    _, _, Xt, _ = _digits()
    model = models.pretrained("cnn")
    x = Xt[:8]
    before = graph.trace(model, x)
    optimized, report = graph.optimize(model, x)
    after = optimized.graph
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 8))
    before.draw(ax=axes[0])
    after.draw(ax=axes[1])
    axes[0].set_title(f"traced: {report.nodes_before} nodes, {report.ops_before} ops", fontsize=10)
    axes[1].set_title(f"after optimize: {report.nodes_after} nodes, {report.ops_after} ops", fontsize=10)
    fired = "\n".join(f"{comment.lstrip('# ')}  (×{times})" for comment, times in report.rules_fired.items())
    fig.suptitle("zoo CNN: graph before / after fusion; rules fired:\n" + fired, fontsize=9)
    return _save(fig, out_dir, "graph_fusion", "mc.graph.trace(model, x), mc.graph.optimize(model, x), Graph.draw")


# ---- 10. INT8 kernel ladder ------------------------------------------------------------------------------

def kernel_ladder_methods(m, k, n, seed=0):
    """{label: zero-argument callable} for one M x K x N product; every integer rung is checked exact first."""
    from .. import kernels
    r = np.random.default_rng(seed)
    a8 = r.integers(-128, 128, (m, k), dtype=np.int8)
    b8 = r.integers(-128, 128, (k, n), dtype=np.int8)
    au = r.integers(0, 256, (m, k), dtype=np.uint8)
    xf, wf = r.standard_normal((m, k)).astype(np.float32), r.standard_normal((k, n)).astype(np.float32)
    packed = kernels.pack_b(b8)
    methods = {"NumPy fp32 (BLAS)": lambda: xf @ wf,
               "reference (NumPy int64)": lambda: kernels.gemm_s8s8s32_reference(a8, b8),
               "loops (Numba)": lambda: kernels.gemm_s8s8s32_loops(a8, b8),
               "tiled (Numba)": lambda: kernels.gemm_s8s8s32_tiled(a8, b8),
               "packed u8s8, portable": lambda: kernels.gemm_u8s8s32(au, packed, path="portable")}
    if kernels.cpu_has_vnni():
        methods["packed u8s8, VNNI"] = lambda: kernels.gemm_u8s8s32(au, packed, path="vnni")
    exact = a8.astype(np.int64) @ b8.astype(np.int64)
    exact_u = au.astype(np.int64) @ b8.astype(np.int64)
    for name in ("loops (Numba)", "tiled (Numba)"):
        if not np.array_equal(methods[name](), exact):
            raise AssertionError(f"kernel_ladder: {name} is not exact on {m}x{k}x{n}")
    for name in [n_ for n_ in methods if n_.startswith("packed")]:
        if not np.array_equal(methods[name](), exact_u):
            raise AssertionError(f"kernel_ladder: {name} is not exact on {m}x{k}x{n}")
    return methods


def fig_kernel_ladder(out_dir, fast=False):
    """GOP/s (2·M·K·N / best time) of NumPy fp32 and each rung of mc.kernels' INT8 ladder, measured now."""
    from .. import kernels
    plt = _plt()
    shapes = ((64, 256, 256),) if fast else ((64, 256, 256), (256, 512, 512))
    rounds, repeats, budget = (1, 3, 0.2) if fast else (3, 5, 0.5)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = []
    for m, k, n in shapes:
        methods = kernel_ladder_methods(m, k, n)
        best = {name: np.inf for name in methods}
        for _ in range(rounds):                       # interleaved rounds: load changes hit every rung alike
            for name, fn in methods.items():
                best[name] = min(best[name], best_seconds(fn, repeats, budget))
        results.append((f"{m}x{k}x{n}", {name: 2 * m * k * n / t / 1e9 for name, t in best.items()}))
    names = list(results[0][1])
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / len(names)
    for i, (name, color) in enumerate(zip(names, ("#7f7f7f",) + COLORS)):
        values = [gops[name] for _, gops in results]
        bars = ax.bar(np.arange(len(results)) + (i - (len(names) - 1) / 2) * width, values, width, color=color,
                      label=name)
        for bar, v in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, v * 1.08, f"{v:.1f}", ha="center", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(results)))
    ax.set_xticklabels([f"M x K x N = {s}" for s, _ in results])
    ax.set_ylabel("GOP/s (2·M·K·N / best time; log)")
    ax.set_title(f"INT8 GEMM kernel ladder vs NumPy float32 — {os.cpu_count()} cores, kernel path "
                 f"'{kernels.kernel_path()}', load average {load:.1f} while measuring", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_ylim(top=ax.get_ylim()[1] * 3)
    return _save(fig, out_dir, "kernel_ladder", "mc.kernels.gemm_s8s8s32_reference / _loops / _tiled, "
                 "gemm_u8s8s32 on pack_b weights; best of interleaved runs — a shared machine: read the ratios, "
                 "not the absolute numbers")


# ---- the set ---------------------------------------------------------------------------------------------

FIGURES = {
    "quant_grid": fig_quant_grid,
    "observer_ranges": fig_observer_ranges,
    "bits_accuracy": fig_bits_accuracy,
    "prune_histograms": fig_prune_histograms,
    "sparsity_accuracy": fig_sparsity_accuracy,
    "sparsity_patterns": fig_sparsity_patterns,
    "kd_temperature": fig_kd_temperature,
    "bf16_error": fig_bf16_error,
    "graph_fusion": fig_graph_fusion,
    "kernel_ladder": fig_kernel_ladder,
}


def check_names(only):
    """The figure names to make, in FIGURES order; ValueError naming the bad ones and listing valid names."""
    if only is None:
        return list(FIGURES)
    if isinstance(only, str):
        only = [only]
    unknown = [name for name in only if name not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure name(s) {', '.join(map(repr, unknown))}; valid names: "
                         f"{', '.join(FIGURES)}")
    return [name for name in FIGURES if name in set(only)]


def make_figures(out_dir="figures", fast=False, only=None, log=print):
    """Make the figures named in `only` (default: all) into `out_dir`; returns {name: path}."""
    names = check_names(only)
    os.makedirs(out_dir, exist_ok=True)
    from .. import core
    saved_state = core.rng().bit_generator.state        # figures seed their own draws; leave the caller's rng
    paths, start = {}, time.perf_counter()
    try:
        for name in names:
            t = time.perf_counter()
            paths[name] = FIGURES[name](out_dir, fast)
            if log is not None:
                log(f"{name:18s} {time.perf_counter() - t:6.1f} s  -> {paths[name]}")
    finally:
        core.rng().bit_generator.state = saved_state
    if log is not None:
        log(f"{len(paths)} figure(s) in {time.perf_counter() - start:.1f} s{' (fast)' if fast else ''}")
    return paths
