"""Rewrite rules as data: a pattern (a small tree of op types with constraints) and a replacement.

    P("relu", P("conv2d", name="conv"), name="act")      relu whose input 0 is a conv2d
    Rule(that_pattern, replace_fn, "# conv2d, relu -> conv2d+relu")

Matching starts at a root node and walks *up* its inputs: `P(op, *inputs)` matches a node whose op is `op`
(a name, a tuple of names, or "*" for any) and whose first len(inputs) inputs match the sub-patterns
(None matches anything). `Ref("conv")` matches the node already bound to "conv" (a DAG pattern, e.g.
conv * sigmoid(conv)). `commutative=True` also tries the two inputs swapped (add, mul); `where(node, graph)`
is an extra constraint. Every bound node other than the root and the `P("*")` wildcards is *interior*: it
disappears in the rewrite, so all its consumers must be inside the match and it must not be an output
(otherwise the value would still be needed and fusing would compute it twice).

A replacement `replace(graph, match) -> result` returns None (decline), or
    a Node           that replaces the root (it takes the root's name),
    a list of Nodes  new nodes; one whose name is a matched node's name replaces that node,
    a str            the name of an existing node that replaces the root (removing an identity op).
`apply_rules(graph, rules)` runs all rules over the graph until none fires (a fixed point) and returns how
often each fired. Every rewrite is checked on the graph's example inputs: each replacement node is run,
and a node whose output shape or dtype differs from the node it replaces is an error naming the rule.
"""
from .interpreter import make_step, run_all


class RewriteError(ValueError):
    """A rule produced an invalid rewrite (the message names the rule and the node)."""


class Ref:
    def __init__(self, name):
        self.name = name


class P:
    def __init__(self, op, *inputs, name=None, where=None, commutative=False):
        self.op = (op,) if isinstance(op, str) else tuple(op)
        self.inputs, self.name, self.where, self.commutative = inputs, name, where, commutative

    def __repr__(self):
        inner = ", ".join(repr(i) for i in self.inputs)
        return f"P({'|'.join(self.op)}{', ' + inner if inner else ''})"


class Rule:
    def __init__(self, pattern, replace, comment):
        self.pattern, self.replace, self.comment = pattern, replace, comment

    @property
    def name(self):
        return self.comment.lstrip("# ").strip()

    def __repr__(self):
        return f"Rule({self.comment!r})"


class Match(dict):
    """{binding name: Node}; `root` is the node the match started from, `interior` the nodes it removes."""

    def __init__(self, root):
        super().__init__()
        self.root, self.interior = root, []
        self.extra = []  # nodes a replacement also rewrites (by reusing their names), e.g. QKV's siblings


def _match(pattern, node, nodes, graph, m):
    if pattern is None:
        return True
    if isinstance(pattern, Ref):
        return pattern.name in m and m[pattern.name] is node
    if "*" not in pattern.op and node.op not in pattern.op:
        return False
    if pattern.name is not None:
        if pattern.name in m and m[pattern.name] is not node:
            return False
        m[pattern.name] = node
    if pattern.where is not None and not pattern.where(node, graph):
        return False
    if not pattern.inputs:
        return True
    if len(node.inputs) < len(pattern.inputs):
        return False
    orders = [node.inputs]
    if pattern.commutative and len(node.inputs) == 2:
        orders.append(node.inputs[::-1])
    for order in orders:
        trial = Match(m.root)
        trial.update(m)
        trial.interior = list(m.interior)
        ok = True
        for sub, name in zip(pattern.inputs, order):
            child = nodes[name]
            if isinstance(sub, P) and "*" not in sub.op and child not in trial.interior:
                trial.interior.append(child)
            if not _match(sub, child, nodes, graph, trial):
                ok = False
                break
        if ok:
            m.clear()
            m.update(trial)
            m.interior = trial.interior
            return True
    return False


def match(pattern, root, graph, nodes=None, consumers=None):
    """A Match of `pattern` rooted at node `root`, or None."""
    nodes = nodes if nodes is not None else {n.name: n for n in graph.nodes}
    m = Match(root)
    if not _match(pattern, root, nodes, graph, m):
        return None
    consumers = consumers if consumers is not None else graph.consumers()
    inside = {n.name for n in m.interior} | {root.name}
    for n in m.interior:
        if n.name in graph.outputs or any(c not in inside for c in consumers[n.name]):
            return None
    return m


def _rewrite(graph, rule, m, result, env):
    """Apply one replacement to `graph` in place (checked on the example values in `env`)."""
    root = m.root
    matched = {n.name: n for n in [root] + m.interior + m.extra}
    if isinstance(result, str):  # the root is an identity: its readers read `result` instead
        old = env[root.name]
        new = env[result]
        if getattr(new, "shape", ()) != getattr(old, "shape", ()):
            raise RewriteError(f"rule {rule.comment!r} at node {root.name!r}: replacing it by {result!r} "
                               f"changes the shape from {old.shape} to {new.shape}")
        _rename_uses(graph, root.name, result)
        graph.nodes.remove(root)
        _remove_dead(graph, m.interior + _constant_inputs(graph, matched))
        return
    takes_name = None  # a single new node may take an interior node's name ("conv1" for conv1+relu)
    if not isinstance(result, list):
        if result.name in matched and result.name != root.name:
            takes_name, result.name = result.name, root.name
        else:
            result.name = root.name
    new_nodes = [result] if not isinstance(result, list) else result
    by_name = {n.name: n for n in graph.nodes}
    for node in new_nodes:  # evaluate each new node on the example values, check what it replaces
        try:
            value = make_step(node)(*[env[i] for i in node.inputs])
        except Exception as exc:
            raise RewriteError(f"rule {rule.comment!r} at node {root.name!r}: the replacement node {node.name!r} "
                               f"({node.label}) fails on the example input: {type(exc).__name__}: {exc}") from exc
        old = by_name.get(node.name)
        if old is not None and node.name not in matched:
            raise RewriteError(f"rule {rule.comment!r}: new node name {node.name!r} is already used outside "
                               "the match")
        if old is not None and (tuple(value.shape) != old.shape or value.dtype != old.dtype):
            raise RewriteError(f"rule {rule.comment!r} changes the output of node {node.name!r} ({old.label}) "
                               f"from shape {old.shape} {old.dtype} to {tuple(value.shape)} {value.dtype}; "
                               "a rewrite must compute the same tensor")
        node.shape, node.dtype = tuple(value.shape), value.dtype
        env[node.name] = value
    replaced = {n.name for n in new_nodes}
    graph.nodes = [n for n in graph.nodes if n.name not in replaced] + new_nodes
    _remove_dead(graph, [n for n in matched.values() if n.name not in replaced] + _constant_inputs(graph, matched))
    if takes_name is not None and takes_name not in {n.name for n in graph.nodes}:
        _rename_uses(graph, root.name, takes_name)
        result.name = takes_name
        env[takes_name] = env[root.name]
    graph.toposort()


def _constant_inputs(graph, matched):
    """Constant nodes read by the matched nodes (removed with them once nothing else reads them)."""
    names = {i for n in matched.values() for i in n.inputs}
    return [n for n in graph.nodes if n.name in names and n.op == "constant"]


def _rename_uses(graph, old, new):
    for n in graph.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
    graph.outputs = [new if o == old else o for o in graph.outputs]


def _remove_dead(graph, candidates):
    """Remove the candidates nobody reads any more (repeatedly: removing one can free another)."""
    names = {n.name for n in candidates}
    changed = True
    while changed:
        changed = False
        used = {i for n in graph.nodes for i in n.inputs} | set(graph.outputs)
        for n in list(graph.nodes):
            if n.name in names and n.name not in used and n.op != "input":
                graph.nodes.remove(n)
                names.discard(n.name)
                changed = True


def apply_rules(graph, rules, max_sweeps=100):
    """Rewrite `graph` in place with `rules` until none fires; returns {rule comment: times fired}."""
    counts = {rule.comment: 0 for rule in rules}
    if not graph.example_inputs:
        raise ValueError("apply_rules: the graph has no example inputs (trace it from a model) -- rewrites are "
                         "checked by running the new nodes on them")
    env = None  # every node's value on the example inputs, computed at the first rewrite
    for _ in range(max_sweeps):
        fired = False
        for root in list(graph.nodes):
            nodes = {n.name: n for n in graph.nodes}
            if nodes.get(root.name) is not root:
                continue  # removed or replaced by an earlier rewrite in this sweep
            consumers = graph.consumers()
            for rule in rules:
                m = match(rule.pattern, root, graph, nodes, consumers)
                if m is None:
                    continue
                result = rule.replace(graph, m)
                if result is None:
                    continue
                if env is None:
                    env = run_all(graph, *graph.example_inputs)
                _rewrite(graph, rule, m, result, env)
                counts[rule.comment] += 1
                fired = True
                break
        if not fired:
            return counts
    raise RewriteError(f"apply_rules: no fixed point after {max_sweeps} sweeps; rules fired {counts} "
                       "(a rule that undoes another?)")
