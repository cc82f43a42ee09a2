"""Pruning masks and patterns: which weights to keep, given importance scores and a sparsity pattern.

A mask is a bool array of the weight's shape, True = keep. A *pattern* says which weights are pruned
together (a *group*); every weight of a group is kept or pruned as one:

    pattern          group (Linear weight (out, in); Conv2d weight (out, in, kh, kw))    groups
    "unstructured"   one element                                                        out*in(*kh*kw)
    "channel"        one output row / filter  w[o]                                      out
    "RxC" e.g. "4x1" a block of R output rows x C input columns (x the whole kh*kw      out/R * in/C
                     kernel for a conv) -- R along outputs, C along inputs, as Intel
                     Neural Compressor's NxM
    "N:M" e.g. "2:4" keep the N largest of every M consecutive weights along the input  (every group
                     dimension (for a conv, along in-channels at each (o, kh, kw));     keeps exactly N)
                     Mishra et al. 2021, NVIDIA's 2:4 sparsity

Group score (criterion "l1" by default, "l2" for the Euclidean norm), from element scores s (|w| for
magnitude pruning, |w * dL/dw| for Taylor, ...):   score(g) = sum_{i in g} s_i   or   sqrt(sum s_i^2).

Selection (per layer, or `global_masks` across layers with one threshold): exactly
`k = round(sparsity * groups)` groups are pruned (round half to even, np.rint), those with the smallest
score. **Ties** are broken by position: among equal scores the group with the lower flat index (C order;
for global scope: the earlier layer first) is pruned first -- a stable sort, so the result never depends
on the platform. For N:M the same rule holds inside each group of M.

References: Han et al., "Learning both Weights and Connections", NeurIPS 2015 (magnitude);
Mao et al., "Exploring the Granularity of Sparsity in CNNs", 2017 (patterns); Mishra et al.,
"Accelerating Sparse Deep Neural Networks", 2021 (N:M).
"""
import re

import numpy as np

from ..core import Tensor

_BLOCK = re.compile(r"^(\d+)x(\d+)$")
_N_OF_M = re.compile(r"^(\d+):(\d+)$")


# ---- patterns -------------------------------------------------------------------------------------
def parse_pattern(pattern):
    """"unstructured" -> ("unstructured",), "channel" -> ("channel",), "4x1" -> ("block", 4, 1),
    "2:4" -> ("n:m", 2, 4). Raises ValueError naming the pattern otherwise."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str such as 'unstructured', 'channel', '4x1' or '2:4', "
                        f"got {type(pattern).__name__}")
    if pattern in ("unstructured", "channel"):
        return (pattern,)
    block, n_of_m = _BLOCK.match(pattern), _N_OF_M.match(pattern)
    if block:
        rows, cols = int(block.group(1)), int(block.group(2))
        if rows < 1 or cols < 1:
            raise ValueError(f"pattern {pattern!r}: block sides must be >= 1")
        return ("block", rows, cols)
    if n_of_m:
        n, m = int(n_of_m.group(1)), int(n_of_m.group(2))
        if not 1 <= n < m:
            raise ValueError(f"pattern {pattern!r}: N:M needs 1 <= N < M (keep N of every M)")
        return ("n:m", n, m)
    raise ValueError(f"unknown pattern {pattern!r}: expected 'unstructured', 'channel', 'RxC' blocks "
                     f"such as '4x1', or 'N:M' such as '2:4'")


def _where(name, shape):
    return f"layer {name!r} weight of shape {tuple(shape)}" if name else f"weight of shape {tuple(shape)}"


def check_pattern(shape, pattern, name=None):
    """Raise ValueError (naming the layer and the shape) if `pattern` cannot tile a weight of `shape`."""
    kind = parse_pattern(pattern)
    shape = tuple(shape)
    if kind[0] == "unstructured":
        if len(shape) == 0:
            raise ValueError(f"{_where(name, shape)}: cannot prune a scalar")
        return kind
    if len(shape) not in (2, 4):
        raise ValueError(f"{_where(name, shape)}: pattern {pattern!r} applies to Linear (out, in) and "
                         f"Conv2d (out, in, kh, kw) weights only")
    if kind[0] == "block":
        rows, cols = kind[1], kind[2]
        if shape[0] % rows or shape[1] % cols:
            raise ValueError(f"{_where(name, shape)}: pattern {pattern!r} needs out={shape[0]} divisible by "
                             f"{rows} and in={shape[1]} divisible by {cols}")
    if kind[0] == "n:m" and shape[1] % kind[2]:
        raise ValueError(f"{_where(name, shape)}: pattern {pattern!r} needs the input dimension "
                         f"{shape[1]} divisible by M={kind[2]}")
    return kind


def to_groups(arr, pattern):
    """View `arr` (weight-shaped) as a (groups, group_size) array for a grouped pattern (not N:M)."""
    kind = parse_pattern(pattern)
    if kind[0] == "unstructured":
        return arr.reshape(-1, 1)
    if kind[0] == "channel":
        return arr.reshape(arr.shape[0], -1)
    if kind[0] == "block":
        rows, cols = kind[1], kind[2]
        out, inp = arr.shape[:2]
        blocks = arr.reshape(out // rows, rows, inp // cols, cols, *arr.shape[2:])
        blocks = np.moveaxis(blocks, 2, 1)  # (out/R, in/C, R, C, kh, kw)
        return blocks.reshape((out // rows) * (inp // cols), -1)
    raise ValueError(f"pattern {pattern!r} has no fixed group layout (N:M groups are chosen inside)")


def from_groups(groups, shape, pattern):
    """Inverse of `to_groups`: a (groups, group_size) array back to the weight's `shape`."""
    kind = parse_pattern(pattern)
    if kind[0] in ("unstructured", "channel"):
        return groups.reshape(shape)
    if kind[0] == "block":
        rows, cols = kind[1], kind[2]
        out, inp = shape[:2]
        blocks = groups.reshape(out // rows, inp // cols, rows, cols, *shape[2:])
        return np.moveaxis(blocks, 1, 2).reshape(shape)
    raise ValueError(f"pattern {pattern!r} has no fixed group layout (N:M groups are chosen inside)")


def expand_group_mask(group_keep, shape, pattern):
    """Inverse of `to_groups` for a mask: one bool per group -> a bool mask of the weight's shape."""
    kind = parse_pattern(pattern)
    group_keep = np.asarray(group_keep, dtype=bool)
    if kind[0] == "unstructured":
        return group_keep.reshape(shape)
    if kind[0] == "channel":
        return np.broadcast_to(group_keep.reshape((shape[0],) + (1,) * (len(shape) - 1)), shape).copy()
    rows, cols = kind[1], kind[2]
    grid = group_keep.reshape(shape[0] // rows, shape[1] // cols)
    full = np.repeat(np.repeat(grid, rows, axis=0), cols, axis=1)
    return np.broadcast_to(full.reshape(full.shape + (1,) * (len(shape) - 2)), shape).copy()


def group_scores(scores, pattern, norm="l1"):
    """Score of every group (flat, float64): L1 (sum) or L2 (root of sum of squares) of its element scores."""
    scores = np.abs(np.asarray(scores, dtype=np.float64))
    groups = to_groups(scores, pattern)
    if norm == "l1":
        return groups.sum(axis=1)
    if norm == "l2":
        return np.sqrt((groups * groups).sum(axis=1))
    raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")


# ---- selection ------------------------------------------------------------------------------------
def check_sparsity(sparsity, name=None):
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.integer, np.floating)):
        raise TypeError(f"sparsity{' of layer ' + repr(name) if name else ''} must be a number in [0, 1), "
                        f"got {type(sparsity).__name__}")
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity{' of layer ' + repr(name) if name else ''} must be in [0, 1), "
                         f"got {sparsity}")
    return float(sparsity)


def n_pruned(sparsity, n_groups):
    """How many of `n_groups` groups a sparsity prunes: round(sparsity * n_groups), half to even."""
    return int(np.rint(sparsity * n_groups))


def keep_largest(scores, n_prune):
    """Bool keep-vector over flat `scores`: False for the `n_prune` smallest (ties: lower index first)."""
    order = np.argsort(scores, kind="stable")
    keep = np.ones(scores.shape[0], dtype=bool)
    keep[order[:n_prune]] = False
    return keep


def n_of_m_mask(scores, n, m):
    """Keep the n largest scores of every m consecutive weights along axis 1 (the input dimension)."""
    scores = np.abs(np.asarray(scores, dtype=np.float64))
    moved = np.moveaxis(scores, 1, -1)  # (out, [kh, kw,] in): groups run along the last axis
    groups = moved.reshape(-1, m)
    order = np.argsort(groups, axis=1, kind="stable")
    keep = np.ones(groups.shape, dtype=bool)
    np.put_along_axis(keep, order[:, : m - n], False, axis=1)
    return np.moveaxis(keep.reshape(moved.shape), -1, 1)


def _element_scores(weight, scores, name):
    weight = np.asarray(weight.data if isinstance(weight, Tensor) else weight)
    if scores is None:
        scores = np.abs(weight)
    scores = np.asarray(scores.data if isinstance(scores, Tensor) else scores)
    if scores.shape != weight.shape:
        raise ValueError(f"{_where(name, weight.shape)}: scores have shape {scores.shape}, expected the "
                         f"weight's shape")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{_where(name, weight.shape)}: scores contain NaN or inf")
    return weight, scores


def _nm_sparsity(sparsity, kind, pattern, name):
    target = 1.0 - kind[1] / kind[2]
    if sparsity is not None and abs(float(sparsity) - target) > 1e-9:
        raise ValueError(f"pattern {pattern!r} fixes the sparsity at {target:g} (keep {kind[1]} of every "
                         f"{kind[2]}){' for layer ' + repr(name) if name else ''}; got sparsity={sparsity} "
                         f"(pass None or {target:g})")


def magnitude_mask(weight, sparsity, pattern="unstructured", *, scores=None, norm="l1", name=None):
    """Bool mask (True = keep) pruning `round(sparsity * groups)` groups of smallest score.

    weight: array or Tensor; sparsity in [0, 1) (for "N:M" pass None or exactly 1 - N/M);
    scores: element importance of the weight's shape (default |weight|); norm: "l1" | "l2" group norm;
    name: the layer's name, used in error messages.
    """
    weight, scores = _element_scores(weight, scores, name)
    kind = check_pattern(weight.shape, pattern, name)
    if kind[0] == "n:m":
        _nm_sparsity(sparsity, kind, pattern, name)
        return n_of_m_mask(scores, kind[1], kind[2])
    sparsity = check_sparsity(sparsity, name)
    per_group = group_scores(scores, pattern, norm)
    keep = keep_largest(per_group, n_pruned(sparsity, per_group.shape[0]))
    return expand_group_mask(keep, weight.shape, pattern)


def global_masks(weights, sparsity, pattern="unstructured", *, scores=None, norm="l1"):
    """One threshold across layers: prune `round(sparsity * total groups)` groups of smallest score.

    weights: dict name -> weight (array or Tensor), in the order ties are broken; scores: optional dict
    name -> element scores. Returns dict name -> mask. Group norms of different layers are compared as
    they are, so with "channel"/"RxC" a layer with larger groups weighs more (scale scores if unwanted).
    """
    if not weights:
        raise ValueError("global_masks: no layers given")
    scores = scores or {}
    kind = parse_pattern(pattern)
    arrays = {name: _element_scores(w, scores.get(name), name) for name, w in weights.items()}
    for name, (w, _) in arrays.items():
        check_pattern(w.shape, pattern, name)
    if kind[0] == "n:m":  # N:M is local to each group of M: global scope is the same as per layer
        return {name: magnitude_mask(w, sparsity, pattern, scores=s, name=name) for name, (w, s) in arrays.items()}
    sparsity = check_sparsity(sparsity)
    per_layer = [group_scores(s, pattern, norm) for _, s in arrays.values()]
    everything = np.concatenate(per_layer)
    keep = keep_largest(everything, n_pruned(sparsity, everything.shape[0]))
    masks, start = {}, 0
    for (name, (w, _)), layer_scores in zip(arrays.items(), per_layer):
        stop = start + layer_scores.shape[0]
        masks[name] = expand_group_mask(keep[start:stop], w.shape, pattern)
        start = stop
    return masks


def mask_sparsity(mask):
    """Fraction of pruned (False) entries."""
    mask = np.asarray(mask, dtype=bool)
    return 1.0 - mask.sum() / mask.size
