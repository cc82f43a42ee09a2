# %% [markdown]
# # 08 · Knowledge distillation: soft targets, hints, DistilBERT-style students
#
# A small *student* learns from a trained *teacher*'s outputs, not only from labels (Hinton, Vinyals &
# Dean, 2015). The teacher's softened probabilities say which wrong classes are *almost* right -- a 3
# that looks like an 8 -- and that "dark knowledge" is information labels do not carry.
#
# 1. the soft-target loss T²·KL(p_teacher ‖ p_student) and what the temperature does;
# 2. an honest experiment over 5 seeds, in a setting where distillation matters: 50 labels + the
#    teacher's soft labels on the other training images; and one where it does not (a tiny student);
# 3. FitNets hints and attention transfer; a DistilBERT-style half-depth transformer;
# 4. distilling into a pruned student and into a fake-quantized (QAT) student: the Distiller is just a
#    `fit` callback, so it composes with the Pruner and with prepare_qat.
# `MINICOMPRESS_FAST=1` shortens the training (the comments show the full run's numbers).

# %%
import os

import numpy as np

import minicompress as mc
from minicompress import distill as D

FAST = os.environ.get("MINICOMPRESS_FAST") == "1"
X_train, y_train, X_test, y_test = mc.data.digits_split()
teacher = mc.models.pretrained("mlp")                   # 64-128-64-10, trained on all 1437 labels
print(f"teacher accuracy {100 * mc.train.evaluate(teacher, (X_test, y_test)):.2f}%")
# -> teacher accuracy 98.06%

# %% [markdown]
# ## 1. Soft targets and temperature
# p = softmax(z / T). At T = 1 the teacher is almost one-hot; at T = 4 the runner-up classes show.

# %%
with mc.no_grad():
    z = teacher(mc.Tensor(X_test[:1])).data
for T in (1, 4, 10):
    p = np.exp(z / T - (z / T).max())
    p /= p.sum()
    top = np.argsort(-p[0])[:3]
    print(f"T={T:>2}: " + ", ".join(f"class {c}: {p[0, c]:.3f}" for c in top))
# -> T= 1: class 9: 0.688, class 8: 0.050, class 5: 0.048
# -> T= 4: class 9: 0.192, class 8: 0.100, class 5: 0.099
# -> T=10: class 9: 0.131, class 8: 0.101, class 5: 0.101
student_logits = mc.Tensor(np.zeros_like(z), requires_grad=True)
for T in (1.0, 4.0, 10.0):
    student_logits.grad = None
    loss = D.kd_loss(student_logits, z, temperature=T)
    loss.backward()
    print(f"T={T:>4}: kd_loss {loss.item():.3f}   |grad| {np.abs(student_logits.grad).sum():.3f}")
# -> T= 1.0: kd_loss 1.018   |grad| 1.176
# -> T= 4.0: kd_loss 0.674   |grad| 0.737
# -> T=10.0: kd_loss 0.561   |grad| 0.663
# The T² factor keeps the gradient's size comparable across temperatures (Hinton et al., §2).

# %% [markdown]
# ## 2. When does distillation help? Measured over 5 seeds
# **Setting A (few labels):** the student (the teacher's architecture at half width) sees the labels of only
# 50 training images (5 per class). Without the teacher it trains on those 50. With the teacher it also
# sees the other 1387 training *images* -- without their labels -- and learns the teacher's soft targets
# on all of them (label -100 marks "unlabelled"; the Distiller gives those rows only the soft term).
# A third arm uses the teacher's *hard* predictions as labels instead (pseudo-labelling), to separate
# "more (teacher-labelled) data" from "soft targets". All arms take about the same number of steps.

# %%
SEEDS = [0, 1] if FAST else [0, 1, 2, 3, 4]
EPOCHS = 4 if FAST else 10


def few_labels(seed, n_labels=50):
    r = np.random.default_rng(seed)
    return np.concatenate([r.choice(np.flatnonzero(y_train == c), n_labels // 10, replace=False)
                           for c in range(10)])


def train_student(seed, data, epochs, callbacks=(), width=0.5, depth=None):
    mc.manual_seed(seed)
    student = D.smaller_mlp(teacher, width=width, depth=depth)
    mc.train.fit(student, data, epochs=epochs, callbacks=list(callbacks), verbose=False)
    return student, mc.train.evaluate(student, (X_test, y_test))


with mc.no_grad():
    teacher_labels = teacher(mc.Tensor(X_train)).data.argmax(axis=1)


def few_label_arms(n_unlabelled=None):
    """Accuracies over SEEDS of: labels only, + teacher hard labels, + teacher soft labels (KD)."""
    arms = {"labels only": [], "+ teacher hard labels": [], "+ teacher soft labels (KD)": []}
    for seed in SEEDS:
        idx = few_labels(seed)
        rest = np.setdiff1d(np.arange(len(y_train)), idx)
        if n_unlabelled is not None:
            rest = np.random.default_rng(seed).choice(rest, n_unlabelled, replace=False)
        rows = np.concatenate([idx, rest])                       # the 50 labelled rows first
        epochs = max(1, EPOCHS * len(X_train) // len(rows))      # same number of steps in every setting
        arms["labels only"].append(
            train_student(seed, (X_train[idx], y_train[idx]), EPOCHS * len(X_train) // len(idx))[1])
        pseudo = np.concatenate([y_train[idx], teacher_labels[rest]])
        arms["+ teacher hard labels"].append(train_student(seed, (X_train[rows], pseudo), epochs)[1])
        partial = np.concatenate([y_train[idx], np.full(len(rest), D.UNLABELLED)])
        arms["+ teacher soft labels (KD)"].append(
            train_student(seed, (X_train[rows], partial), epochs, [D.Distiller(teacher, 4.0, 0.9)])[1])
    return arms


for n_unlabelled in (None, 150):
    arms = few_label_arms(n_unlabelled)
    print(f"50 labels, {'all 1387' if n_unlabelled is None else n_unlabelled} unlabelled images:")
    for name, accs in arms.items():
        print(f"  {name:>27}: {100 * np.mean(accs):.2f} ± {100 * np.std(accs):.2f} %")
# -> measured (5 seeds, full run):
# -> 50 labels, all 1387 unlabelled images:
# ->                  labels only: 82.83 ± 1.20 %
# ->        + teacher hard labels: 95.44 ± 0.38 %
# ->   + teacher soft labels (KD): 95.61 ± 0.69 %
# -> 50 labels, 150 unlabelled images:
# ->                  labels only: 82.83 ± 1.20 %
# ->        + teacher hard labels: 91.28 ± 0.96 %
# ->   + teacher soft labels (KD): 92.61 ± 1.34 %
# Reading: the teacher lifts the 50-label student by ~13 points. With plenty of unlabelled images, its
# hard predictions are as good as its soft ones (the gain is the teacher labelling more data); with few,
# the soft targets carry more per image and win by ~1.3 points (about one standard deviation).

# %% [markdown]
# **Setting B (tiny student, all labels):** a 64-8-10 student on all 1437 labels, with and without the
# teacher. Here the labels already say almost everything the teacher knows about digits, and the student
# is too small to use more; on our runs distillation did not help.
# (Our pretrained teacher is also trained with label smoothing 0.1, which makes teachers less informative
# -- Müller et al., "When does label smoothing help?", 2019.)

# %%
tiny = {"tiny student": [], "tiny student + KD": []}
for seed in SEEDS[:2] if FAST else SEEDS:
    tiny["tiny student"].append(train_student(seed, (X_train, y_train), EPOCHS, width=1 / 16, depth=1)[1])
    tiny["tiny student + KD"].append(train_student(seed, (X_train, y_train), EPOCHS, [D.Distiller(teacher)],
                                                   width=1 / 16, depth=1)[1])
for name, accs in tiny.items():
    print(f"{name:>18}: {100 * np.mean(accs):.2f} ± {100 * np.std(accs):.2f} %")
# -> measured (5 seeds, full run):
# ->       tiny student: 86.83 ± 4.47 %
# ->  tiny student + KD: 79.17 ± 11.94 %
# No gain; worse and less stable on average (two seeds of the KD arm collapsed in training).

# %% [markdown]
# ## 3. Hints (FitNets) and attention maps
# `FeatureDistiller` matches a student layer's output to a teacher layer's through a learnable linear map
# (64 -> 128 here); the Distiller trains that map with the student and adds β·L_feat to the loss.

# %%
fitnet = []
for seed in SEEDS[:2] if FAST else SEEDS:
    idx = few_labels(seed)
    partial = np.full_like(y_train, D.UNLABELLED)
    partial[idx] = y_train[idx]
    mc.manual_seed(seed)
    student = D.smaller_mlp(teacher, width=0.5)
    hint = D.FeatureDistiller(student, teacher, {"0": "0", "2": "2"})     # both hidden Linear layers
    distiller = D.Distiller(teacher, temperature=4.0, alpha=0.9, extra_losses=[hint], extra_weights=[0.1])
    mc.train.fit(student, (X_train, partial), epochs=EPOCHS, callbacks=[distiller], verbose=False)
    fitnet.append(mc.train.evaluate(student, (X_test, y_test)))
print(f"50 labels + KD + hints: {100 * np.mean(fitnet):.2f} ± {100 * np.std(fitnet):.2f} %")
# -> 50 labels + KD + hints: 96.39 ± 0.46 %   (measured; KD alone: 95.61 ± 0.69 %)

# %% [markdown]
# **DistilBERT-style student.** Take the pretrained 2-layer tiny transformer, keep every other encoder
# layer (here: layer 0) with all embeddings and the head, and fine-tune it with KD plus attention transfer
# (KL between head-averaged attention maps). Compare with the same 1-layer student from random weights.

# %%
tt_teacher = mc.models.pretrained("tiny_transformer")
tt_epochs = 2 if FAST else 10
tt = {}
for init in ("random init", "DistilBERT init"):
    mc.manual_seed(0)
    if init == "random init":
        student = mc.models.tiny_transformer(num_layers=1)
    else:
        student = D.distilbert_init(tt_teacher)               # layers [0] of [0, 1]
    if init == "DistilBERT init":
        before = mc.train.evaluate(student, (X_test, y_test))
        print(f"DistilBERT init before training: {100 * before:.2f}%")
    attention = D.AttentionDistiller(student, tt_teacher,
                                     {"encoder.layers.0.self_attn": "encoder.layers.1.self_attn"})
    distiller = D.Distiller(tt_teacher, temperature=4.0, alpha=0.9, extra_losses=[attention])
    mc.train.fit(student, (X_train, y_train), epochs=tt_epochs, callbacks=[distiller], verbose=False)
    tt[init] = mc.train.evaluate(student, (X_test, y_test))
print(f"teacher (2 layers) {100 * mc.train.evaluate(tt_teacher, (X_test, y_test)):.2f}%; 1-layer student after "
      f"{tt_epochs} epochs: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in tt.items()))
# -> DistilBERT init before training: 77.22%       (one of two layers removed, no training yet)
# -> teacher (2 layers) 97.78%; 1-layer student after 10 epochs: random init 94.44%, DistilBERT init 96.39%

# %% [markdown]
# ## 4. Distil into a pruned or a quantized student
# The Distiller only changes the loss (fit's on_loss hook), so it works with any other callback. A copy
# of the teacher pruned to 90 % with the AGP schedule, fine-tuned with labels only vs with the teacher:

# %%
epochs = 3 if FAST else 10
steps = epochs * int(np.ceil(len(X_train) / 64))
pruned = {}
for label, extra in (("labels only", []), ("with the dense teacher", [D.Distiller(teacher)])):
    mc.manual_seed(0)
    student = mc.models.pretrained("mlp")
    pruner = mc.prune.Pruner(student, 0.9, schedule=mc.prune.make_schedule("agp", end_step=steps // 2,
                                                                          frequency=10))
    mc.train.fit(student, (X_train, y_train), epochs=epochs, callbacks=[pruner] + extra, verbose=False)
    pruned[label] = mc.train.evaluate(student, (X_test, y_test))
print("90%-sparse MLP: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in pruned.items()))
# -> 90%-sparse MLP: labels only 93.89%, with the dense teacher 94.72%   (one seed: about noise level)

# %% [markdown]
# And a fake-quantized student (QAT, prepare_qat) distilled from the FP32 teacher, then converted to INT8:

# %%
mc.manual_seed(0)
qat_student = mc.quant.prepare_qat(mc.models.pretrained("mlp"), mc.quant.default_qat_qconfig)
mc.train.fit(qat_student, (X_train, y_train), epochs=2 if FAST else 5, callbacks=[D.Distiller(teacher)],
             verbose=False)
int8 = mc.quant.convert(qat_student.eval())
print(f"INT8 student distilled with QAT: {100 * mc.train.evaluate(int8, (X_test, y_test)):.2f}%")
# -> INT8 student distilled with QAT: 97.78%
