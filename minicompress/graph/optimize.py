"""`optimize(model_or_graph, example_input=None, passes=DEFAULT_PASSES) -> (GraphModule, OptimizeReport)`.

    optimized, report = mc.graph.optimize(model, x)   # trace, run the passes, compile
    optimized(x)                                      # a Tensor, equal to model(x) within float rounding
    mc.graph.optimize(model, x, dtype="bf16")         # the same graph run in emulated BF16
    print(report)                                     # nodes before/after, how often each rule fired

A pass is a list of Rules run together to a fixed point; `passes` is a sequence of pass names from
`rules.PASSES` ("cleanup", "fold_bn", "layout", "fuse"), Rule lists, or single Rules, run in order.
The input model and graph are never changed (the passes work on a copy).
"""
from .. import nn
from ..core import Tensor
from .interpreter import compile_graph
from .ir import Graph
from .pattern import Rule, apply_rules
from .rules import DEFAULT_PASSES, PASSES
from .tracer import trace


class OptimizeReport:
    def __init__(self, nodes_before, nodes_after, ops_before, ops_after, fired):
        self.nodes_before, self.nodes_after = nodes_before, nodes_after
        self.ops_before, self.ops_after = ops_before, ops_after
        self.fired = fired  # [(pass name, rule comment, times)], in order, rules that fired at least once

    @property
    def rules_fired(self):
        """{rule comment: times fired} over all passes."""
        counts = {}
        for _, comment, times in self.fired:
            counts[comment] = counts.get(comment, 0) + times
        return counts

    def __str__(self):
        lines = [f"nodes {self.nodes_before} -> {self.nodes_after}   (ops {self.ops_before} -> {self.ops_after})"]
        for pass_name, comment, times in self.fired:
            lines.append(f"  {pass_name:8s} {times:3d} x  {comment}")
        return "\n".join(lines)

    __repr__ = __str__


class GraphModule(nn.Module):
    """A Module that runs a Graph with the interpreter (its parameters live in the graph's nodes)."""

    def __init__(self, graph, dtype="fp32"):
        super().__init__()
        self.graph, self.dtype = graph, dtype
        self._run = compile_graph(graph, dtype)
        self.training = False

    def forward(self, *inputs):
        out = self._run(*inputs)
        return tuple(Tensor(o) for o in out) if isinstance(out, tuple) else Tensor._wrap(out, False)

    def train(self, mode=True):
        if mode:
            raise ValueError("GraphModule: an optimised graph runs inference only (folded BatchNorm, removed "
                             "Dropout); it cannot be put in training mode")
        return self

    def extra_repr(self):
        return f"{len(self.graph)} nodes, {self.graph.num_ops()} ops, {self.dtype}"


def _resolve_passes(passes):
    resolved = []
    for k, item in enumerate(passes):
        if isinstance(item, str):
            if item not in PASSES:
                raise ValueError(f"optimize: unknown pass {item!r}; known passes: {', '.join(PASSES)}")
            resolved.append((item, PASSES[item]))
        elif isinstance(item, Rule):
            resolved.append((item.name[:20], [item]))
        elif isinstance(item, (list, tuple)) and all(isinstance(r, Rule) for r in item):
            resolved.append((f"pass{k}", list(item)))
        else:
            raise TypeError(f"optimize: passes[{k}] is a {type(item).__name__}; expected a pass name, a Rule or "
                            "a list of Rules")
    return resolved


def optimize(model_or_graph, example_input=None, passes=DEFAULT_PASSES, dtype="fp32"):
    """Trace (if given a model), rewrite with `passes`, compile; returns (GraphModule, OptimizeReport).
    dtype="bf16" runs the optimised graph in emulated BF16 (autocast's op categories, graph/bf16.py)."""
    resolved = _resolve_passes(passes)
    if dtype not in ("fp32", "bf16"):
        raise ValueError(f"optimize: dtype must be 'fp32' or 'bf16', got {dtype!r}")
    if isinstance(model_or_graph, Graph):
        graph = model_or_graph.copy()
        if example_input is not None:
            inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
            graph.example_inputs = tuple(x.data if isinstance(x, Tensor) else x for x in inputs)
    else:
        if example_input is None:
            raise ValueError("optimize: example_input is needed to trace a model (pass a batch of inputs)")
        graph = trace(model_or_graph, example_input)
    nodes_before, ops_before = len(graph), graph.num_ops()
    fired = []
    for pass_name, rules in resolved:
        counts = apply_rules(graph, rules)
        fired += [(pass_name, comment, times) for comment, times in counts.items() if times]
    report = OptimizeReport(nodes_before, len(graph), ops_before, graph.num_ops(), fired)
    return GraphModule(graph, dtype), report
