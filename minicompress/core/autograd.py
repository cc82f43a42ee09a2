"""Reverse-mode automatic differentiation over a topological order of the graph.

`backward(root, grad)` computes dL/dx for every tensor x that `root` was computed from:
1. order the graph so that every tensor comes after the tensors computed from it (reverse topological),
2. seed dL/droot = grad (1 for a scalar loss),
3. for each tensor in that order, call its op's `backward` with the summed gradient from all its uses,
   and add the results to the gradients of its inputs.
Leaves that require grad accumulate into `.grad`. Nothing recurses, so deep graphs (long training loops
unrolled by accident, deep nets) cannot hit Python's recursion limit.
"""
import numpy as np

from .tensor import Tensor


def topological_order(root):
    """Tensors reachable from `root` through recorded ops, each after all of its parents.

    Every Tensor carries its creation number `_seq`, and an op's output is always created after its
    inputs, so sorting the reachable tensors by that number is a topological order: one sweep to collect
    them, one sort, no recursion.
    """
    nodes, seen = [root], {id(root)}
    for node in nodes:  # the list grows while it is walked: a breadth-first sweep
        parents = node._parents
        if parents is not None:
            for parent in parents:
                if isinstance(parent, Tensor) and parent.requires_grad and id(parent) not in seen:
                    seen.add(id(parent))
                    nodes.append(parent)
    nodes.sort(key=_creation_number)
    return nodes


def _creation_number(tensor):
    return tensor._seq


def backward(root, grad=None):
    if not root.requires_grad:
        raise ValueError("backward: this tensor does not require grad (no input had requires_grad=True, "
                         "or it was computed under no_grad())")
    if grad is None:
        if root.data.size != 1:
            raise ValueError(f"backward: the tensor has shape {root.shape}; a gradient can only be created "
                             "implicitly for a scalar output -- pass grad= with the same shape")
        grad = np.ones_like(root.data)
    else:
        grad = np.asarray(grad.data if hasattr(grad, "data") and not isinstance(grad, np.ndarray) else grad,
                          dtype=root.data.dtype)
        if grad.shape != root.shape:
            raise ValueError(f"backward: grad has shape {grad.shape}, expected the tensor's shape {root.shape}")

    grads = {id(root): grad}
    for node in reversed(topological_order(root)):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node._op is None or node._retain:
            node.grad = np.array(g, dtype=node.data.dtype) if node.grad is None else node.grad + g
        if node._op is None:
            continue
        grad_hook = node._ctx.grad_hook
        if grad_hook is not None:  # set by autocast (core/function.py): low-precision gradients
            g = grad_hook(g)
        input_grads = node._op.backward(node._ctx, g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if grad_hook is not None:
            input_grads = tuple(None if pg is None else grad_hook(pg) for pg in input_grads)
        for parent, pg, needed in zip(node._parents, input_grads, node._ctx.needs_input_grad):
            if pg is None or not needed:
                continue
            if pg.shape != parent.data.shape:
                raise RuntimeError(f"{node._op.__name__}.backward returned a gradient of shape {pg.shape} "
                                   f"for an input of shape {parent.data.shape}")
            key = id(parent)
            grads[key] = pg if key not in grads else grads[key] + pg
