"""Building a student from a teacher: a narrower/shallower MLP, and DistilBERT's initialisation.

    smaller_mlp(teacher, width=0.5, depth=None)
        teacher: a Sequential of Linear layers with activations between them (e.g. mc.models.mlp()).
        The student keeps the input and output sizes, keeps the first `depth` hidden layers (all by default)
        and scales each hidden width by `width` (rounded, at least 1). Fresh random weights (drawn with
        mc.core.rng()); the teacher's training `recipe`, if it has one, is copied so `fit` trains it the same way.

    distilbert_init(teacher, layers="encoder.layers", keep=None)
        DistilBERT (Sanh et al., 2019, §3): "we initialize the student from the teacher by taking one layer out
        of two". The student is a deep copy of the teacher whose ModuleList at `layers` keeps the layers
        `keep` (default 0, 2, 4, ...: every other one); embeddings, norms and the head are copied unchanged.
"""
import copy

import numpy as np

from ..nn import Linear, Module, ModuleList, Sequential


def _linear_layers(teacher):
    if not isinstance(teacher, Sequential):
        raise TypeError(f"smaller_mlp: the teacher must be a Sequential of Linear layers and activations, "
                        f"got {type(teacher).__name__}")
    linears = [(i, m) for i, m in enumerate(teacher) if isinstance(m, Linear)]
    if len(linears) < 1:
        raise ValueError("smaller_mlp: the teacher has no Linear layer")
    return linears


def smaller_mlp(teacher, width=0.5, depth=None):
    """A fresh MLP like `teacher` with hidden widths × `width` and only the first `depth` hidden layers."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise ValueError(f"smaller_mlp: width must be a number > 0, got {width!r}")
    linears = _linear_layers(teacher)
    hidden_count = len(linears) - 1
    depth = hidden_count if depth is None else depth
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or not 0 <= depth <= hidden_count:
        raise ValueError(f"smaller_mlp: depth must be an int in [0, {hidden_count}] (the teacher's hidden "
                         f"layers), got {depth!r}")
    modules = list(teacher)
    first, last = linears[0][1], linears[-1][1]
    sizes = [first.in_features] + [max(1, int(round(lin.out_features * width))) for _, lin in linears[:depth]]
    layers = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        index = linears[k][0]
        layers.append(Linear(n_in, n_out, bias=linears[k][1].bias is not None))
        end = linears[k + 1][0]
        layers += [copy.deepcopy(m) for m in modules[index + 1:end] if not isinstance(m, Linear)]  # activations
    layers.append(Linear(sizes[-1], last.out_features, bias=last.bias is not None))
    student = Sequential(*layers)
    recipe = getattr(teacher, "recipe", None)
    if recipe is not None:
        student.recipe = recipe
    return student


def distilbert_init(teacher, layers="encoder.layers", keep=None):
    """A copy of `teacher` whose encoder keeps every other layer (0, 2, 4, ...) or the indices `keep`."""
    if not isinstance(teacher, Module):
        raise TypeError(f"distilbert_init: expected a Module, got {type(teacher).__name__}")
    try:
        stack = teacher.get_submodule(layers)
    except (AttributeError, KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"distilbert_init: the teacher has no submodule {layers!r} (the ModuleList of "
                         "encoder layers); pass layers='...'") from exc
    if not isinstance(stack, ModuleList):
        raise TypeError(f"distilbert_init: {layers!r} is a {type(stack).__name__}, expected a ModuleList")
    n = len(stack)
    keep = list(range(0, n, 2)) if keep is None else list(keep)
    if not keep or any(not isinstance(i, (int, np.integer)) or not 0 <= i < n for i in keep) \
            or len(set(keep)) != len(keep):
        raise ValueError(f"distilbert_init: keep must list distinct layer indices in [0, {n}), got {keep!r}")
    student = copy.deepcopy(teacher)
    kept = ModuleList([student.get_submodule(layers)[i] for i in keep])
    student.set_submodule(layers, kept)
    parent_name, _, _ = layers.rpartition(".")
    parent = student.get_submodule(parent_name) if parent_name else student
    if isinstance(getattr(parent, "num_layers", None), int):
        parent.num_layers = len(keep)
    return student
