"""A picture of a Graph with matplotlib alone (no graphviz): a layered layout of the DAG.

Layering (the longest-path method of Sugiyama-style drawing): an input sits in layer 0 and every other
node one layer below its deepest input, layer(n) = 1 + max(layer(i) for i in inputs); a constant is moved
down to just above its first reader, so that its edge stays short. Nodes of a layer are
spread left to right in graph order; edges are arrows from an input to its consumer. Constants are
drawn grey, inputs green, outputs orange, fused ops (label with "+") blue.
"""
import matplotlib.pyplot as plt


def layers(graph):
    """{name: layer index} by the longest path from an input; a constant sits just above its first reader."""
    depth = {}
    for node in graph.nodes:
        depth[node.name] = 1 + max((depth[i] for i in node.inputs), default=-1)
    for node in graph.nodes:
        if node.op == "input" or node.inputs:
            continue
        readers = [depth[n.name] for n in graph.nodes if node.name in n.inputs]
        if readers:
            depth[node.name] = max(min(readers) - 1, 0)
    return depth


def layout(graph):
    """{name: (x, y)}: y = -layer, x spread evenly within the layer."""
    depth = layers(graph)
    rows = {}
    for node in graph.nodes:
        rows.setdefault(depth[node.name], []).append(node.name)
    pos = {}
    for d, names in rows.items():
        for k, name in enumerate(names):
            pos[name] = (k - (len(names) - 1) / 2, -d)
    return pos


def _color(node, outputs):
    if node.op == "input":
        return "#b7e1a1"
    if node.name in outputs:
        return "#ffcc80"
    if node.op == "constant":
        return "#dddddd"
    return "#9ecae1" if "+" in node.label else "#f0f0f0"


def draw_graph(graph, ax=None, path=None):
    """Draw `graph`; returns the matplotlib Figure (saved to `path` when given)."""
    pos = layout(graph)
    depth = max((-y for _, y in pos.values()), default=0) + 1
    width = max((sum(1 for _, y in pos.values() if y == -d) for d in range(depth)), default=1)
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4.0, 2.2 * width), max(3.0, 0.8 * depth)))
    else:
        fig = ax.figure
    for node in graph.nodes:
        x1, y1 = pos[node.name]
        for i in node.inputs:
            x0, y0 = pos[i]
            ax.annotate("", xy=(x1, y1 + 0.18), xytext=(x0, y0 - 0.18),
                        arrowprops=dict(arrowstyle="->", color="#555555", lw=0.8))
    for node in graph.nodes:
        x, y = pos[node.name]
        text = node.label if node.op not in ("input", "constant") else f"{node.op}\n{node.name}"
        if node.shape is not None and node.op != "constant":
            text += f"\n{node.shape}"
        ax.text(x, y, text, ha="center", va="center", fontsize=7,
                bbox=dict(boxstyle="round,pad=0.3", fc=_color(node, graph.outputs), ec="#333333", lw=0.6))
    ax.set_xlim(-width / 2 - 0.5, width / 2 + 0.5)
    ax.set_ylim(-depth + 0.4, 0.6)
    ax.axis("off")
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
