"""Exercise 10: a graph rewrite rule: conv2d / linear, batch_norm -> one layer.

Write the replacement function of the FOLD_BN rules in minicompress/graph/rules.py: given a match of
batch_norm(conv2d or linear), return the one Node that replaces both.

Fill in the body of `_fold_bn` below, then check it with

    python tutorials/exercises/check.py 10

Reference solution: `_fold_bn` in minicompress/graph/rules.py.
Generated from the library by tutorials/exercises/make_exercises.py (teachers: regenerate, don't edit).
"""
from minicompress.graph.fold_bn import fold_bn_params
from minicompress.graph.ir import Node


def _fold_bn(graph, m):
    """Write the replacement function of the FOLD_BN rules in minicompress/graph/rules.py: given a
    match of batch_norm(conv2d or linear), return the one Node that replaces both.
    """
    # TODO(exercise 10): hints
    #   - m['layer'] is the conv2d / linear Node, m.root the batch_norm Node.
    #   - Their parameters are in node.params: the layer's 'weight' and maybe 'bias'; the
    #     BatchNorm's 'running_mean', 'running_var' and maybe 'weight' (gamma), 'bias' (beta); eps
    #     is bn.attrs['eps'].
    #   - Fold with fold_bn_params (exercise 9).
    #   - Return Node(layer.name, layer.op, layer.inputs, layer.attrs, {'weight': w, 'bias': b},
    #     source=...): same name, op, inputs and attributes as the layer.
    raise NotImplementedError("Exercise 10: _fold_bn is not written yet")
