"""`Tensor`: a NumPy array that remembers how it was computed, so that `.backward()` can differentiate.

    x = Tensor([[1., 2.]], requires_grad=True)
    y = (x * x).sum()          # each op is a Function; y remembers (op, inputs)
    y.backward()               # reverse-mode: visit the graph in reverse topological order
    x.grad                     # array([[2., 4.]], dtype=float32)

Conventions (as PyTorch): floating data is float32 unless `dtype` says otherwise (float64 input is cast
down, so `Tensor(np.random.randn(3))` is float32); integer and boolean data keep their dtype and cannot
require gradients. Only leaves (tensors made by the user, such as parameters) keep `.grad`, and it
accumulates over `backward` calls until zeroed; call `retain_grad()` on an intermediate to keep its gradient.
"""
import itertools

import numpy as np

_creation_counter = itertools.count()


def _float_dtype(arr):
    return np.issubdtype(arr.dtype, np.floating)


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "_ctx", "_op", "_parents", "_retain", "_seq", "__weakref__")
    __array_priority__ = 1000  # so that ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        arr = np.array(data, dtype=dtype, copy=None)
        if dtype is None and arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        if requires_grad and not _float_dtype(arr):
            raise TypeError(f"Tensor: only floating-point tensors can require gradients, got dtype {arr.dtype}")
        self.data = arr
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = self._op = self._parents = None
        self._retain = False
        self._seq = next(_creation_counter)

    @classmethod
    def _wrap(cls, array, requires_grad):
        """Wrap an op's output without copying or casting (the fast path of Function.apply)."""
        t = cls.__new__(cls)
        t.data = array if isinstance(array, np.ndarray) else np.asarray(array)
        t.grad = None
        t.requires_grad = requires_grad
        t._ctx = t._op = t._parents = None
        t._retain = False
        t._seq = next(_creation_counter)  # creation order: an op's output always comes after its inputs
        return t

    # ---- what it is -------------------------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def is_leaf(self):
        return self._op is None

    def numel(self):
        return self.data.size

    def size(self, axis=None):
        return self.data.shape if axis is None else self.data.shape[axis]

    def __len__(self):
        return len(self.data)

    def numpy(self):
        return self.data

    def item(self):
        if _function.get_trace_hook() is not None:
            raise RuntimeError("Tensor.item() while tracing a graph: a Python number computed from a tensor "
                               "(data-dependent control flow or arithmetic) cannot be recorded as a graph op")
        return self.data.item()

    def __bool__(self):
        """As before (Python's fallback `len(t) != 0`), but an error while a graph is being traced."""
        if _function.get_trace_hook() is not None:
            raise RuntimeError("bool(Tensor) while tracing a graph: data-dependent Python control flow "
                               "(`if tensor:`, `while tensor:`, `and`/`or` on tensors) cannot be traced")
        return len(self) != 0

    def __repr__(self):
        body = np.array2string(self.data, precision=4, separator=", ", prefix="Tensor(")
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self.data.dtype != np.float32:
            extra += f", dtype={self.data.dtype}"
        return f"Tensor({body}{extra})"

    __hash__ = object.__hash__

    # ---- autograd ---------------------------------------------------------------------------------
    def backward(self, grad=None):
        """Back-propagate from this tensor; see `autograd.backward`."""
        from .autograd import backward
        backward(self, grad)

    def detach(self):
        """The same data, cut from the graph (shares memory, as torch.Tensor.detach)."""
        return Tensor._wrap(self.data, False)

    def retain_grad(self):
        self._retain = True
        return self

    def requires_grad_(self, flag=True):
        if flag and not _float_dtype(self.data):
            raise TypeError(f"requires_grad_: dtype {self.data.dtype} cannot require gradients")
        self.requires_grad = flag
        return self

    def zero_grad(self):
        self.grad = None

    # ---- arithmetic -------------------------------------------------------------------------------
    def _other(self, other):
        """Python numbers stay weak scalars (no dtype promotion); arrays and NumPy scalars become Tensors."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, np.generic):  # np.float64 is a subclass of float: make it weak first
            other = other.item()
        if isinstance(other, (int, float, bool)):
            return other
        arr = np.asarray(other)
        if _float_dtype(arr) and _float_dtype(self.data):
            arr = arr.astype(self.data.dtype, copy=False)
        return Tensor._wrap(arr, False)

    def __add__(self, other):
        return _e.Add.apply(self, self._other(other))

    def __radd__(self, other):
        return _e.Add.apply(self._other(other), self)

    def __sub__(self, other):
        return _e.Sub.apply(self, self._other(other))

    def __rsub__(self, other):
        return _e.Sub.apply(self._other(other), self)

    def __mul__(self, other):
        return _e.Mul.apply(self, self._other(other))

    def __rmul__(self, other):
        return _e.Mul.apply(self._other(other), self)

    def __truediv__(self, other):
        return _e.Div.apply(self, self._other(other))

    def __rtruediv__(self, other):
        return _e.Div.apply(self._other(other), self)

    def __pow__(self, exponent):
        return _e.Pow.apply(self, self._other(exponent))

    def __rpow__(self, base):
        return _e.Pow.apply(self._other(base), self)

    def __matmul__(self, other):
        return _r.MatMul.apply(self, self._other(other))

    def __rmatmul__(self, other):
        return _r.MatMul.apply(self._other(other), self)

    def __neg__(self):
        return _e.Neg.apply(self)

    # ---- comparisons: boolean masks, no gradient ---------------------------------------------------
    def _compare(self, other, op):
        o = other.data if isinstance(other, Tensor) else other
        return Tensor._wrap(np.asarray(op(self.data, o)), False)

    def __lt__(self, other):
        return self._compare(other, np.less)

    def __le__(self, other):
        return self._compare(other, np.less_equal)

    def __gt__(self, other):
        return self._compare(other, np.greater)

    def __ge__(self, other):
        return self._compare(other, np.greater_equal)

    def __eq__(self, other):
        return self._compare(other, np.equal)

    def __ne__(self, other):
        return self._compare(other, np.not_equal)

    # ---- unary math -------------------------------------------------------------------------------
    def exp(self):
        return _e.Exp.apply(self)

    def log(self):
        return _e.Log.apply(self)

    def sqrt(self):
        return _e.Sqrt.apply(self)

    def abs(self):
        return _e.Abs.apply(self)

    def clip(self, min=None, max=None):
        return _e.Clip.apply(self, min, max)

    clamp = clip

    def relu(self):
        return _e.ReLU.apply(self)

    def sigmoid(self):
        return _e.Sigmoid.apply(self)

    def tanh(self):
        return _e.Tanh.apply(self)

    def to(self, dtype):
        """A copy in another floating dtype (e.g. np.float64 for gradient checks); differentiable."""
        dtype = np.dtype(dtype)
        return self if dtype == self.data.dtype else _e.Cast.apply(self, dtype)

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # ---- reductions -------------------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        return _r.Sum.apply(self, axis=_axis(axis), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _r.Mean.apply(self, axis=_axis(axis), keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return _r.Max.apply(self, axis=_axis(axis), keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return -((-self).max(axis=axis, keepdims=keepdims))

    def argmax(self, axis=None):
        return Tensor._wrap(np.asarray(np.argmax(self.data, axis=axis)), False)

    # ---- shapes -----------------------------------------------------------------------------------
    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            target = _check_reshape(self.data.shape, shape)
        except ValueError as exc:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {self.shape} into {shape}") from exc
        return _s.Reshape.apply(self, target)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        nd = self.ndim
        if nd == 0:
            return self.reshape(1)
        start, end = start_dim % nd, end_dim % nd
        shape = self.shape[:start] + (-1,) + self.shape[end + 1:]
        return self.reshape(shape)

    def permute(self, *axes):
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        if sorted(a % self.ndim for a in axes) != list(range(self.ndim)):
            raise ValueError(f"permute: {axes} is not a permutation of the {self.ndim} axes of shape {self.shape}")
        return _s.Permute.apply(self, tuple(a % self.ndim for a in axes))

    def transpose(self, dim0=-2, dim1=-1):
        """Swap two axes (torch.transpose); with no arguments, the last two."""
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return _s.Permute.apply(self, tuple(axes))

    @property
    def T(self):
        return _s.Permute.apply(self, tuple(reversed(range(self.ndim))))

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        return _s.GetItem.apply(self, index)


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def _check_reshape(shape, target):
    """Resolve a -1 in `target` and check that the element counts agree (raises ValueError)."""
    size = int(np.prod(shape))
    if list(target).count(-1) > 1:
        raise ValueError("only one -1 allowed")
    known = int(np.prod([n for n in target if n != -1]))
    if -1 in target:
        if known == 0 or size % known:
            raise ValueError("does not divide")
        target = tuple(size // known if n == -1 else n for n in target)
    if int(np.prod(target)) != size:
        raise ValueError("sizes differ")
    return tuple(int(n) for n in target)


def tensor(data, requires_grad=False, dtype=None):
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def concat(tensors, axis=0):
    """Join tensors along an existing axis (np.concatenate / torch.cat)."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concat: needs at least one tensor")
    return _s.Concat.apply(*tensors, axis=axis)


cat = concat


def stack(tensors, axis=0):
    """Join tensors along a new axis (np.stack / torch.stack)."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    return _s.Stack.apply(*tensors, axis=axis)


def where(condition, a, b):
    """Element-wise choice: `a` where `condition` is True, else `b`; differentiable in a and b."""
    cond = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    return _e.Where.apply(cond.astype(bool, copy=False), a, b)


from . import elementwise as _e  # noqa: E402  (the ops import Function, which imports Tensor)
from . import reduce as _r  # noqa: E402
from . import shape as _s  # noqa: E402
from . import function as _function  # noqa: E402
