"""Sensitivity scan: how much accuracy does each layer lose when pruned alone, at each sparsity?

    for each layer l, for each sparsity s:   prune only l to s (magnitude mask, `pattern`), evaluate,
                                             restore l's weight
    -> rows {layer, sparsity, accuracy, drop}    (drop = baseline - accuracy)

Layers whose curve stays flat can take a high sparsity; steep ones need a low one.
`pick_sparsities(rows, max_drop)` turns the table into per-layer targets for `Pruner(sparsity={...})`:
the largest scanned sparsity whose drop is <= max_drop. (Han et al. 2015, Fig. 6; Distiller's
sensitivity analysis; Li et al. 2017, Fig. 2.)
"""
import numpy as np

from .layers import prunable_layers
from .masks import check_sparsity, magnitude_mask, parse_pattern

DEFAULT_SPARSITIES = (0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95)


def sensitivity_scan(model, eval_fn, sparsities=DEFAULT_SPARSITIES, pattern="unstructured", *, layers=None):
    """eval_fn(model) -> accuracy. Returns the table as a list of row dicts. The model is left unchanged."""
    layers = prunable_layers(model, layers)
    if parse_pattern(pattern)[0] == "n:m":
        raise ValueError("sensitivity_scan: N:M fixes the sparsity; scan 'unstructured', 'channel' or 'RxC'")
    sparsities = [check_sparsity(s) for s in sparsities]
    baseline = float(eval_fn(model))
    rows = []
    for name, layer in layers.items():
        original = layer.weight.data.copy()
        try:
            for s in sparsities:
                mask = magnitude_mask(original, s, pattern, name=name)
                layer.weight.data = np.where(mask, original, 0).astype(original.dtype)
                accuracy = float(eval_fn(model))
                rows.append(dict(layer=name, sparsity=s, accuracy=accuracy, drop=baseline - accuracy))
        finally:
            layer.weight.data = original
    return rows


def pick_sparsities(rows, max_drop):
    """{layer: the largest scanned sparsity with drop <= max_drop} (0.0 if none qualifies)."""
    picked = {}
    for r in rows:
        picked.setdefault(r["layer"], 0.0)
        if r["drop"] <= max_drop:
            picked[r["layer"]] = max(picked[r["layer"]], r["sparsity"])
    return picked


def format_sensitivity(rows):
    """The table as text: one line per layer, one column per sparsity."""
    sparsities = sorted({r["sparsity"] for r in rows})
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    acc = {(r["layer"], r["sparsity"]): r["accuracy"] for r in rows}
    lines = [f"{'layer':<12}" + "".join(f"{s:>8.0%}" for s in sparsities)]
    for layer in layers:
        lines.append(f"{layer:<12}" + "".join(f"{acc.get((layer, s), float('nan')):>8.3f}" for s in sparsities))
    return "\n".join(lines)


def plot_sensitivity(rows, path=None, ax=None):
    """Accuracy vs sparsity, one line per layer (matplotlib). Saves to `path` if given; returns the axes."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for layer in dict.fromkeys(r["layer"] for r in rows):
        points = [(r["sparsity"], r["accuracy"]) for r in rows if r["layer"] == layer]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=layer)
    ax.set_xlabel("sparsity of the layer")
    ax.set_ylabel("accuracy")
    ax.set_title("Pruning sensitivity (one layer at a time)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    if path is not None:
        ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    return ax
