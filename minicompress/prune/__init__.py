"""Floor 3: pruning -- masks and patterns, criteria, schedules, the Pruner, group lasso, real shrinking.

    import minicompress as mc
    mask = mc.prune.magnitude_mask(w, 0.9)                   # bool, True = keep; "channel", "4x1", "2:4"
    pruner = mc.prune.Pruner(model, 0.9, schedule=mc.prune.make_schedule("agp", end_step=300))
    mc.train.fit(model, data, callbacks=[pruner])            # pruned weights stay exactly 0
    small = mc.prune.shrink(model)                           # channel-pruned -> a smaller dense model

One concept a file: masks.py (patterns, selection), criteria.py (magnitude, Taylor, SNIP, group norms),
schedule.py (AGP and friends), pruner.py, group_lasso.py, layers.py (channel flow), shrink.py,
cost.py (params, MACs), sparse_linear.py (CSR inference), nm_linear.py (N:M weights stored compressed),
sensitivity.py.
"""
from .cost import count_macs, count_params
from .criteria import TaylorAccumulator, group_norms, magnitude_scores, snip_scores, taylor_scores
from .group_lasso import GroupLasso, group_soft_threshold
from .layers import channel_params, execution_order, prunable_layers
from .masks import (check_pattern, global_masks, magnitude_mask, mask_sparsity, n_of_m_mask, parse_pattern)
from .pruner import Pruner, format_sparsity_report, sparsity_report
from .schedule import (agp_sparsity, cosine_sparsity, exponential_sparsity, iterative_sparsity, linear_sparsity,
                       make_schedule, one_shot_sparsity)
from .sensitivity import format_sensitivity, pick_sparsities, plot_sensitivity, sensitivity_scan
from .shrink import dead_channels, plan_shrink, shrink
from .nm_linear import NMSparseLinear, compress_n_of_m
from .sparse_linear import SparseLinear, sparsify_linears

__all__ = ["magnitude_mask", "global_masks", "parse_pattern", "check_pattern", "n_of_m_mask", "mask_sparsity",
           "magnitude_scores", "group_norms", "taylor_scores", "snip_scores", "TaylorAccumulator",
           "agp_sparsity", "linear_sparsity", "cosine_sparsity", "exponential_sparsity", "one_shot_sparsity",
           "iterative_sparsity", "make_schedule", "Pruner", "sparsity_report", "format_sparsity_report",
           "GroupLasso", "group_soft_threshold", "shrink", "plan_shrink", "dead_channels", "count_params", "count_macs",
           "SparseLinear", "sparsify_linears", "NMSparseLinear", "compress_n_of_m", "sensitivity_scan", "pick_sparsities", "format_sensitivity",
           "plot_sensitivity", "prunable_layers", "execution_order", "channel_params"]
