"""`Module`: a tree of layers that owns Parameters and buffers, as `torch.nn.Module`.

Assigning a Parameter or a Module to an attribute registers it; `register_buffer` registers a
non-trained array (BatchNorm's running statistics). From the registrations come:

    named_parameters()   ("0.weight", Parameter), ... depth first, in assignment order
    state_dict()         {"0.weight": array, ..., "1.running_mean": array} -- PyTorch's names and shapes
    load_state_dict(sd)  checks every key and shape first, then copies: a failed load changes nothing
    train() / eval()     sets `.training` on the whole tree (Dropout and BatchNorm read it)

Forward hooks (`register_forward_pre_hook`, `register_forward_hook`) let observers and tracers watch
a module's inputs and outputs without changing its code.
"""
import os
from collections import OrderedDict

import numpy as np

from ..core import Tensor
from .parameter import Parameter


class RemovableHandle:
    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration -----------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if isinstance(value, (Parameter, Module)):
            for store in (self._parameters, self._buffers, self._modules):
                store.pop(name, None)
            self.__dict__.pop(name, None)
            (self._parameters if isinstance(value, Parameter) else self._modules)[name] = value
        elif name in self._parameters or name in self._modules:
            if value is not None:
                kind = "parameter" if name in self._parameters else "submodule"
                raise TypeError(f"{type(self).__name__}.{name} is a {kind}; cannot assign a "
                                f"{type(value).__name__} to it (assign a Parameter/Module or None)")
            (self._parameters if name in self._parameters else self._modules)[name] = None
        elif name in self._buffers:
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for store in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(store)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, value):
        """Register a non-trained array (None allowed) that belongs in state_dict."""
        self.__dict__.pop(name, None)
        self._buffers[name] = None if value is None else np.asarray(value)

    def register_parameter(self, name, param):
        if param is None:
            self._parameters[name] = None
        else:
            setattr(self, name, param)

    def add_module(self, name, module):
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"add_module: {name} must be a Module, got {type(module).__name__}")
        self._modules[name] = module

    # ---- walking the tree -------------------------------------------------------------------------
    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix=""):
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            kids = [(f"{name}.{k}" if name else k, m) for k, m in module.named_children()]
            stack.extend(reversed(kids))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_name, module in modules:
            for name, p in module._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix=""):
        for mod_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self):
        for _, b in self.named_buffers():
            yield b

    def get_submodule(self, target):
        module = self
        for part in target.split(".") if target else []:
            if part not in module._modules:
                raise AttributeError(f"get_submodule: {type(module).__name__} has no submodule '{part}' "
                                     f"(looking up '{target}')")
            module = module._modules[part]
        return module

    def set_submodule(self, target, new):
        """Replace the submodule at dotted path `target` (used by quantization, pruning, fusion)."""
        parent_name, _, child = target.rpartition(".")
        parent = self.get_submodule(parent_name)
        if child not in parent._modules:
            raise AttributeError(f"set_submodule: no submodule '{target}'")
        parent._modules[child] = new

    def apply(self, fn):
        for m in list(self.children()):
            m.apply(fn)
        fn(self)
        return self

    # ---- modes and gradients ----------------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, flag=True):
        for p in self.parameters():
            p.requires_grad = flag
        return self

    def to(self, dtype):
        """Cast every floating parameter and buffer to `dtype` in place (np.float64 for gradient checks)."""
        dtype = np.dtype(dtype)
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        for m in self.modules():
            for k, b in m._buffers.items():
                if b is not None and np.issubdtype(b.dtype, np.floating):
                    m._buffers[k] = b.astype(dtype)
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    # ---- calling ----------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        if not self._forward_pre_hooks and not self._forward_hooks:  # the common case, kept cheap
            return self.forward(*args, **kwargs)
        for hook in tuple(self._forward_pre_hooks.values()):
            changed = hook(self, args)
            if changed is not None:
                args = changed if isinstance(changed, tuple) else (changed,)
        out = self.forward(*args, **kwargs)
        for hook in tuple(self._forward_hooks.values()):
            changed = hook(self, args, out)
            if changed is not None:
                out = changed
        return out

    def register_forward_pre_hook(self, hook):
        key = object()
        self._forward_pre_hooks[key] = hook
        return RemovableHandle(self._forward_pre_hooks, key)

    def register_forward_hook(self, hook):
        key = object()
        self._forward_hooks[key] = hook
        return RemovableHandle(self._forward_hooks, key)

    # ---- state ------------------------------------------------------------------------------------
    def state_dict(self):
        """Copies of every parameter and buffer, keyed by dotted name (PyTorch's names and shapes)."""
        out = OrderedDict()
        for mod_name, module in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for name, p in module._parameters.items():
                if p is not None:
                    out[prefix + name] = p.data.copy()
            for name, b in module._buffers.items():
                if b is not None:
                    out[prefix + name] = np.array(b, copy=True)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from `state_dict` (a mapping, or the path of an .npz written by `save`).

        Every key and shape is checked before anything is copied; on any problem a ValueError lists
        all missing, unexpected and mis-shaped keys, and the model is left exactly as it was.
        Returns (missing_keys, unexpected_keys) when strict=False.
        """
        if isinstance(state_dict, (str, os.PathLike)):
            state_dict = load_arrays(state_dict)
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict: expected a mapping of name -> array or a file path, "
                            f"got {type(state_dict).__name__}")
        targets = {}
        for mod_name, module in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for name, p in module._parameters.items():
                if p is not None:
                    targets[prefix + name] = ("param", module, name, p.data)
            for name, b in module._buffers.items():
                if b is not None:
                    targets[prefix + name] = ("buffer", module, name, b)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        problems = []
        new_values = {}
        for key, (_, _, _, current) in targets.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            value = value.data if isinstance(value, Tensor) else value
            try:
                arr = np.asarray(value)
            except Exception as exc:  # an object that is not array-like
                problems.append(f"{key}: not an array ({exc})")
                continue
            if arr.shape != current.shape:
                problems.append(f"{key}: shape {arr.shape} in the state dict, {current.shape} in the model")
            elif not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
                problems.append(f"{key}: dtype {arr.dtype} is not numeric")
            else:
                new_values[key] = arr.astype(current.dtype, copy=True)
        if strict and (missing or unexpected) or problems:
            lines = [f"load_state_dict into {type(self).__name__} failed; the model is unchanged."]
            if strict and missing:
                lines.append("missing keys: " + ", ".join(missing))
            if strict and unexpected:
                lines.append("unexpected keys: " + ", ".join(unexpected))
            lines += ["mismatched: " + p for p in problems]
            raise ValueError("\n".join(lines))
        for key, arr in new_values.items():
            kind, module, name, _ = targets[key]
            if kind == "param":
                module._parameters[name].data = arr
            else:
                module._buffers[name] = arr
        return missing, unexpected

    def save(self, path):
        """Write state_dict() to an .npz file (load it back with `load_state_dict(path)`)."""
        np.savez(path, **self.state_dict())

    # ---- printing ---------------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for name, m in self.named_children():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n" + "\n".join(lines) + "\n)"


def load_arrays(path):
    """Read an .npz of named arrays, with an error that says what is wrong with a bad file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"load_state_dict: no file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as exc:
        raise ValueError(f"load_state_dict: {path!r} is not a readable .npz state file "
                         f"({type(exc).__name__}: {exc})") from exc
