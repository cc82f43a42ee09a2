"""The graph IR: a network as a DAG of `Node`s, each one op with its inputs, attributes and parameters.

    Node(name, op, inputs, attrs, params, shape, dtype, source)
        name    unique in the graph; other nodes refer to it in their `inputs`
        op      what it computes: "input", "constant", "linear", "conv2d", "relu", "add", "reshape", ...
        inputs  names of the nodes whose outputs this op reads, in argument order
        attrs   plain Python values (stride, axis, eps, the fused epilogue steps, ...)
        params  NumPy arrays owned by the op (weight, bias, running_mean, ...)
        shape, dtype   of the output, as recorded on the example input (batch dimension first)
        source  where it came from: the module path ("features.0") or the Function's name

A `Graph` keeps its nodes in a topological order (every node after its inputs), the names of its input
and output nodes, and the example inputs it was traced with (rewrites re-run ops on them to check
shapes). `print(graph)` gives a table; `graph.draw()` a layered matplotlib picture; `graph(x)` runs it.
Fused GEMM nodes keep their base op ("conv2d") and list the fused steps in attrs["epilogue"]; their
`label` reads "conv2d+add+relu".
"""
import copy

import numpy as np


class Node:
    __slots__ = ("name", "op", "inputs", "attrs", "params", "shape", "dtype", "source")

    def __init__(self, name, op, inputs=(), attrs=None, params=None, shape=None, dtype=None, source=""):
        self.name, self.op = name, op
        self.inputs = list(inputs)
        self.attrs = dict(attrs or {})
        self.params = dict(params or {})
        self.shape = None if shape is None else tuple(shape)
        self.dtype = dtype
        self.source = source

    @property
    def label(self):
        """The op with its fused steps: "conv2d+add+relu"."""
        steps = self.attrs.get("epilogue", ())
        return "+".join([self.op] + [s[0] for s in steps])

    def copy(self):
        """A new Node with its own lists and dicts (the parameter arrays are shared, never mutated)."""
        return Node(self.name, self.op, self.inputs, copy.copy(self.attrs), self.params, self.shape, self.dtype,
                    self.source)

    def __repr__(self):
        return f"Node({self.name!r}, {self.label!r}, inputs={self.inputs}, shape={self.shape})"


class Graph:
    def __init__(self, nodes, inputs, outputs, example_inputs=(), fixed_batch=None):
        self.nodes = list(nodes)
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.example_inputs = tuple(example_inputs)
        self.fixed_batch = fixed_batch  # None, or the only batch size the graph can run (see trace)
        self._check()

    # ---- structure --------------------------------------------------------------------------------------
    def _check(self):
        seen = set()
        for node in self.nodes:
            if node.name in seen:
                raise ValueError(f"Graph: two nodes are named {node.name!r}")
            missing = [i for i in node.inputs if i not in seen]
            if missing:
                raise ValueError(f"Graph: node {node.name!r} ({node.label}) reads {missing}, which are not "
                                 "defined before it (the node list must be in topological order)")
            seen.add(node.name)
        for name in self.outputs + self.inputs:
            if name not in seen:
                raise ValueError(f"Graph: input/output {name!r} is not a node of the graph")

    def __len__(self):
        return len(self.nodes)

    def __iter__(self):
        return iter(self.nodes)

    def __contains__(self, name):
        return any(n.name == name for n in self.nodes)

    def node(self, name):
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"Graph has no node named {name!r}")

    def arrays(self):
        """(node.param, ndarray) for every array the nodes hold: an optimised graph's weights (what
        report.model_size_bytes counts for a GraphModule)."""
        return [(f"{n.name}.{key}", value) for n in self.nodes for key, value in n.params.items()
                if isinstance(value, np.ndarray)]

    def num_ops(self):
        """Nodes that compute something (not inputs or constants): the count fusion reduces."""
        return sum(n.op not in ("input", "constant") for n in self.nodes)

    def consumers(self):
        """{name: [names of the nodes reading it, once per edge]}."""
        users = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                users[i].append(n.name)
        return users

    def op_counts(self):
        counts = {}
        for n in self.nodes:
            counts[n.label] = counts.get(n.label, 0) + 1
        return counts

    def copy(self):
        return Graph([n.copy() for n in self.nodes], self.inputs, self.outputs, self.example_inputs,
                     self.fixed_batch)

    def fresh_name(self, base):
        names = {n.name for n in self.nodes}
        if base not in names:
            return base
        k = 1
        while f"{base}_{k}" in names:
            k += 1
        return f"{base}_{k}"

    def toposort(self):
        """Reorder the nodes so that each comes after its inputs, keeping the current order where possible."""
        position = {n.name: k for k, n in enumerate(self.nodes)}
        by_name = {n.name: n for n in self.nodes}
        done, order = set(), []

        def visit(name, trail):
            if name in done:
                return
            if name in trail:
                raise ValueError(f"Graph: cycle through node {name!r}")
            trail.add(name)
            for i in sorted(by_name[name].inputs, key=position.get):
                visit(i, trail)
            trail.discard(name)
            done.add(name)
            order.append(by_name[name])

        for n in list(self.nodes):
            visit(n.name, set())
        self.nodes = order
        self._check()
        return self

    # ---- running, printing, drawing -----------------------------------------------------------------------
    def __call__(self, *inputs):
        from .interpreter import run
        return run(self, *inputs)

    def table(self):
        rows = [("name", "op", "inputs", "shape", "params", "attrs")]
        for n in self.nodes:
            params = " ".join(f"{k}({','.join(map(str, np.shape(v)))})" for k, v in n.params.items() if v is not None)
            attrs = ", ".join(f"{k}={_short(v)}" for k, v in n.attrs.items() if k not in ("fn", "epilogue"))
            rows.append((n.name, n.label, ", ".join(n.inputs) or "-", str(n.shape), params, attrs))
        limits = (36, 22, 36, 18, 48)
        widths = [min(max(len(r[k]) for r in rows), limits[k]) for k in range(5)]
        lines = []
        for r in rows:
            cells = [_clip(r[k], limits[k]).ljust(widths[k]) for k in range(5)] + [r[5]]
            lines.append("  ".join(cells).rstrip())
        head = (f"Graph: {len(self.nodes)} nodes, {self.num_ops()} ops; inputs {', '.join(self.inputs)}; "
                f"outputs {', '.join(self.outputs)}")
        return head + "\n" + "\n".join(lines)

    def __str__(self):
        return self.table()

    def __repr__(self):
        return f"Graph({len(self.nodes)} nodes, {self.num_ops()} ops)"

    def draw(self, ax=None, path=None):
        from .draw import draw_graph
        return draw_graph(self, ax=ax, path=path)


def _clip(text, width):
    return text if len(text) <= width else text[:width - 3] + "..."


def _short(value):
    if isinstance(value, np.ndarray):
        return f"array{value.shape}" if value.size > 4 else np.array2string(value, separator=",")
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    text = repr(value)
    return text if len(text) <= 30 else text[:27] + "..."
