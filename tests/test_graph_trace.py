"""Tracer, IR, interpreter, printing and drawing of minicompress.graph, and the errors of bad input."""
import numpy as np
import pytest

import minicompress as mc
from minicompress import nn
from minicompress.graph import Graph, Node, TraceError, optimize, trace


def _x(n=6, d=64, seed=0):
    return np.random.default_rng(seed).random((n, d), dtype=np.float32)


def _mlp():
    mc.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10)).eval()


def test_trace_records_leaf_layers_in_order_with_shapes_and_params():
    model = _mlp()
    g = trace(model, _x())
    assert [n.op for n in g.nodes] == ["input", "linear", "relu", "dropout", "linear"]
    assert [n.shape for n in g.nodes] == [(6, 64), (6, 32), (6, 32), (6, 32), (6, 10)]
    lin = g.nodes[1]
    np.testing.assert_array_equal(lin.params["weight"], model[0].weight.data)
    assert lin.params["weight"] is not model[0].weight.data  # a snapshot, not the live array
    assert g.inputs == ["x"] and g.outputs == [g.nodes[-1].name]


def test_interpreter_matches_an_independent_numpy_forward_on_another_batch_size():
    model = _mlp()
    g = trace(model, _x(6))
    x = _x(11, seed=3)
    w1, b1, w2, b2 = (p.data.astype(np.float64) for p in model.parameters())
    expected = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2
    np.testing.assert_allclose(g(x), expected, rtol=1e-5, atol=1e-5)


def test_function_level_ops_between_modules_are_recorded():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            h = self.fc(x.reshape(x.shape[0], 2, 8))          # reshape with the batch in its target
            return (h * 2.0 + h.permute(0, 2, 1).sum(axis=2, keepdims=True).permute(0, 2, 1)).sigmoid()

    mc.manual_seed(1)
    net = Net().eval()
    g = trace(net, _x(4, 16))
    ops = [n.op for n in g.nodes]
    for op in ("reshape", "linear", "mul", "add", "permute", "sigmoid"):
        assert op in ops
    assert "sum()" in ops  # a Function without a kernel here runs through its own forward
    for n in (1, 4, 9):
        x = _x(n, 16, seed=n)
        np.testing.assert_allclose(g(x), net(mc.Tensor(x)).data, rtol=1e-6, atol=1e-6)


def test_table_and_drawing():
    g = trace(_mlp(), _x())
    text = str(g)
    assert "linear" in text and "weight(32,64)" in text and "(6, 10)" in text
    assert len(text.splitlines()) == 2 + len(g)
    fig = g.draw()
    labels = [t.get_text() for t in fig.axes[0].texts if t.get_text()]
    arrows = [t for t in fig.axes[0].texts if not t.get_text()]
    assert len(labels) == len(g) and any(lbl.startswith("relu") for lbl in labels)
    assert len(arrows) == sum(len(n.inputs) for n in g.nodes)  # one arrow per edge
    import matplotlib.pyplot as plt
    plt.close(fig)
    from minicompress.graph.draw import layers
    depth = layers(g)
    assert [depth[n.name] for n in g.nodes] == [0, 1, 2, 3, 4]


def test_layers_of_a_dag_take_the_longest_path():
    nodes = [Node("x", "input", shape=(1, 2)), Node("k", "constant", attrs={"value": 1.0}), Node("a", "relu", ["x"]),
             Node("b", "relu", ["a"]), Node("c", "add", ["x", "b"]), Node("d", "mul", ["c", "k"])]
    from minicompress.graph.draw import layers
    # the constant k is drawn just above its reader d, not in the top row
    assert layers(Graph(nodes, ["x"], ["d"])) == {"x": 0, "a": 1, "b": 2, "c": 3, "k": 3, "d": 4}


# ---- bad input ----------------------------------------------------------------------------------------
class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc(x)
        if h.sum() > 0:  # data-dependent Python control flow
            return h.relu()
        return h


class UsesItem(nn.Module):
    def forward(self, x):
        return x * x.max().item()


class NumpyInside(nn.Module):
    def forward(self, x):
        return mc.Tensor(np.tanh(x.data))  # computed outside minicompress ops


def test_data_dependent_control_flow_is_an_error_naming_the_module():
    model = nn.Sequential(nn.Linear(4, 4), Branchy()).eval()
    with pytest.raises(TraceError, match=r"data-dependent control flow in module '1' \(Branchy\)"):
        trace(model, np.ones((2, 4), np.float32))
    with pytest.raises(TraceError, match=r"UsesItem.*item\(\)"):
        trace(nn.Sequential(UsesItem()).eval(), np.ones((2, 4), np.float32))
    # the hooks are gone afterwards: bool(Tensor) works as before, the model has no hooks left
    assert bool(mc.Tensor([1.0])) and not bool(mc.Tensor(np.zeros((0,))))
    assert mc.core.function.get_trace_hook() is None
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_unknown_op_is_an_error_naming_the_module():
    model = nn.Sequential(nn.Linear(4, 4), NumpyInside()).eval()
    with pytest.raises(TraceError, match=r"unknown op.*'1' \(NumpyInside\)"):
        trace(model, np.ones((2, 4), np.float32))


def test_training_mode_and_bad_arguments_are_errors():
    with pytest.raises(TraceError, match=r"'2' \(Dropout\) is in training mode"):
        trace(_mlp().train(), _x())
    with pytest.raises(ValueError, match="scalar"):
        trace(_mlp(), np.float32(1.0))
    with pytest.raises(TypeError, match="callable"):
        trace(42, _x())


def test_interpreter_errors_name_the_node_and_the_shape():
    g = Graph([Node("x", "input", shape=(1, 3)), Node("mystery", "frobnicate", ["x"])], ["x"], ["mystery"])
    with pytest.raises(ValueError, match=r"no kernel for op 'frobnicate' \(node 'mystery'\)"):
        g(np.ones((1, 3)))
    with pytest.raises(ValueError, match="before it"):
        Graph([Node("y", "relu", ["x"]), Node("x", "input")], ["x"], ["y"])
    fast, _ = optimize(_mlp(), _x())
    with pytest.raises(ValueError, match=r"input 'x' has shape \(2, 5\), expected \(N, 64\)"):
        fast(np.ones((2, 5), np.float32))


def test_batch_dependent_constant_keeps_the_traced_batch_size():
    class Positions(nn.Module):
        def forward(self, x):  # a different value per row: cannot be broadcast to another batch size
            return x + mc.Tensor(np.arange(x.shape[0], dtype=np.float32).reshape(-1, 1))

    g = trace(Positions(), np.zeros((3, 2), np.float32))
    assert g.fixed_batch == 3
    np.testing.assert_array_equal(g(np.ones((3, 2), np.float32)), [[1, 1], [2, 2], [3, 3]])
    with pytest.raises(ValueError, match="traced for batch size 3 only"):
        g(np.ones((4, 2), np.float32))


def test_uniform_batch_sized_constant_is_broadcast_to_any_batch():
    class ZerosLike(nn.Module):
        def forward(self, x):
            return x + mc.Tensor(np.full((x.shape[0], 1), 2.0, np.float32))

    g = trace(ZerosLike(), np.zeros((3, 2), np.float32))
    assert g.fixed_batch is None
    np.testing.assert_array_equal(g(np.ones((5, 2), np.float32)), np.full((5, 2), 3.0))
