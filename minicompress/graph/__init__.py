"""Floor 4: graph optimisation. Trace a model into a Graph IR, rewrite it with declarative rules, run it.

    g = mc.graph.trace(model, x)           # Graph of Nodes; print(g), g.draw(), g(x)
    fast, report = mc.graph.optimize(model, x)          # dtype="bf16": run it in emulated BF16
    mc.graph.fuse_conv_bn(conv, bn)        # a Conv2d with an eval-mode BatchNorm folded in
"""
from .fold_bn import fold_bn_params, fuse_conv_bn, fuse_linear_bn
from .interpreter import compile_graph, run
from .ir import Graph, Node
from .optimize import GraphModule, OptimizeReport, optimize
from .pattern import Match, P, Ref, RewriteError, Rule, apply_rules, match
from .rules import DEFAULT_PASSES, EPILOGUE_FUSIONS, PASSES
from .tracer import TraceError, trace

__all__ = ["trace", "optimize", "fuse_conv_bn", "fuse_linear_bn", "fold_bn_params", "Graph", "Node", "run",
           "compile_graph", "GraphModule", "OptimizeReport", "P", "Ref", "Rule", "Match", "match", "apply_rules",
           "RewriteError", "TraceError", "PASSES", "DEFAULT_PASSES", "EPILOGUE_FUSIONS"]
