"""Ops that move elements without changing them: reshape, transpose/permute, indexing, concat, stack.

Their backward moves the gradient back the same way: reshape back, apply the inverse permutation,
scatter-add into the indexed positions (`np.add.at`, so repeated indices accumulate), split.
"""
import numpy as np

from .function import Function


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.in_shape = a.shape
        return np.reshape(a, shape)

    @staticmethod
    def backward(ctx, grad):
        return np.reshape(grad, ctx.in_shape), None


class Permute(Function):
    @staticmethod
    def forward(ctx, a, axes):
        ctx.axes = axes
        return np.transpose(a, axes)

    @staticmethod
    def backward(ctx, grad):
        return np.transpose(grad, np.argsort(ctx.axes)), None


class GetItem(Function):
    @staticmethod
    def forward(ctx, a, index):
        ctx.args = (a.shape, a.dtype, index)
        return a[index]

    @staticmethod
    def backward(ctx, grad):
        shape, dtype, index = ctx.args
        out = np.zeros(shape, dtype=grad.dtype)
        if _is_basic(index):
            out[index] = grad            # slices view distinct elements: plain assignment
        else:
            np.add.at(out, index, grad)  # fancy indices may repeat: accumulate
        return out, None


def _is_basic(index):
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in items)


class Concat(Function):
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis
        ctx.splits = np.cumsum([a.shape[axis] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        return tuple(np.split(grad, ctx.splits, axis=ctx.axis))


class Stack(Function):
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis
        return np.stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        return tuple(np.moveaxis(grad, ctx.axis, 0))
