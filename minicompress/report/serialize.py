"""Save / load a whole model -- float, quantized (static or dynamic), pruned, shrunk, sparse -- in one .npz file.

    mc.report.save(model, "model.npz", example_input=x)    # arrays + JSON metadata in one file
    model = mc.report.load("model.npz")                     # the same classes, the same arrays: bit-equal outputs

File layout (a NumPy .npz, i.e. a zip of .npy files, read with allow_pickle=False):

    "__minicompress__"   uint8 bytes of a UTF-8 JSON document:
        format, version, architecture (one line per module: name, class, plain attributes -- the
        constructor arguments such as in_features, kernel_size, qscheme), arrays ({key: shape, dtype,
        sha256}), tree (the encoded object tree, below), example_input (shape/dtype, if given), user metadata
    "a0", "a1", ...      every array of the model, exactly as stored (int8 weights stay int8)

The tree. A model is rebuilt without calling constructors: every object is written as its class and its
attributes (`vars(obj)`), recursively -- modules (with their `_parameters`, `_buffers`, `_modules`), Parameters
and Tensors, arrays, NumPy scalars (float32 scales stay float32), dicts, lists, tuples, scipy sparse matrices,
and references to module-level functions / classes. This is what pickle does, with three differences that
make it safe to open and exact to compare: JSON instead of code, arrays with checksums, and classes are
only imported from the `minicompress` package (or ones passed as `classes=`), never from the file's choice.

Errors (all ValueError naming the file and the problem): no file, not a zip / truncated, no metadata (a plain
state_dict .npz: use Module.load_state_dict), unknown format version, an array missing, reshaped or whose
checksum differs (corrupt), a class outside the allowed packages, and -- with `like=model` -- a file whose
modules or array shapes do not match that model.
"""
import collections
import hashlib
import importlib
import json
import os
import zipfile

import numpy as np

from ..core import Tensor

FORMAT, VERSION = "minicompress-model", 1
META_KEY = "__minicompress__"
ALLOWED_PACKAGE = "minicompress"


# ---- saving -----------------------------------------------------------------------------------------------------
def save(model, path, example_input=None, metadata=None):
    """Write `model` (any minicompress Module) to `path` (.npz). Returns the path written.

    example_input: optional batch whose shape/dtype is recorded (the `report` command uses it to measure MACs).
    metadata: optional JSON-able dict stored as is (accuracy, the tuning configuration, ...).
    """
    if not hasattr(model, "named_modules"):
        raise TypeError(f"save: expected a minicompress Module, got {type(model).__name__}")
    hooks = [name or "(root)" for name, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    if hooks:
        raise ValueError(f"save: modules {hooks} have forward hooks (observers, tracers); remove them first "
                         "(hooks are code and are not saved)")
    encoder = _Encoder()
    tree = encoder.encode(model, "model")
    meta = {"format": FORMAT, "version": VERSION, "class": _class_path(type(model)),
            "architecture": architecture(model), "tree": tree,
            "arrays": {k: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _digest(a),
                           "where": encoder.where[k]} for k, a in encoder.arrays.items()},
            "metadata": metadata or {}}
    if example_input is not None:
        x = example_input.data if isinstance(example_input, Tensor) else np.asarray(example_input)
        meta["example_input"] = {"shape": list(x.shape), "dtype": x.dtype.str}
    try:
        text = json.dumps(meta, allow_nan=True)
    except TypeError as exc:
        raise TypeError(f"save: metadata must be JSON-able ({exc})") from None
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    payload = {META_KEY: np.frombuffer(text.encode("utf-8"), dtype=np.uint8)}
    payload.update(encoder.arrays)
    np.savez(path, **payload)
    return path


def architecture(model):
    """[{name, type, args}] for every module: its class and its plain (non-array, non-module) attributes."""
    rows = []
    for name, m in model.named_modules():
        args = {k: _plain(v) for k, v in vars(m).items()
                if not k.startswith("_") and k != "training" and _plain(v) is not _SKIP}
        rows.append({"name": name, "type": _class_path(type(m)), "args": args})
    return rows


class _Encoder:
    def __init__(self):
        self.arrays, self.where, self.memo = {}, {}, {}

    def array(self, arr, where):
        arr = np.asarray(arr)
        if arr.dtype.hasobject:
            raise TypeError(f"save: {where} is an object array; only numeric / bool arrays can be saved")
        if id(arr) in self.memo:
            return {"__type__": "ndarray", "key": self.memo[id(arr)][0]}
        key = f"a{len(self.arrays)}"
        self.memo[id(arr)] = (key, arr)  # keep arr alive so its id is not reused
        self.arrays[key], self.where[key] = np.ascontiguousarray(arr), where
        return {"__type__": "ndarray", "key": key}

    def encode(self, value, where):
        if value is None or isinstance(value, (bool, str)):
            return value
        if type(value) in (int, float):
            return value  # Python's JSON writes repr(float): exact, and NaN / Infinity round-trip
        if isinstance(value, np.ndarray):
            return self.array(value, where)
        if isinstance(value, np.generic):
            if value.dtype.hasobject or value.dtype.kind not in "biuf":
                raise TypeError(f"save: {where} is a NumPy {value.dtype} scalar; only numbers can be saved")
            return {"__type__": "npscalar", "dtype": value.dtype.str, "value": value.item()}  # exact via repr
        if isinstance(value, np.dtype):
            return {"__type__": "dtype", "str": value.str}
        if isinstance(value, list):
            return {"__type__": "list", "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if type(value) is tuple:
            return {"__type__": "tuple", "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if type(value) in (dict, collections.OrderedDict):
            items = [[self.encode(k, f"{where} key"), self.encode(v, f"{where}[{k!r}]")] for k, v in value.items()]
            return {"__type__": "odict" if type(value) is collections.OrderedDict else "dict", "items": items}
        if isinstance(value, type) or _is_function(value):
            return {"__type__": "ref", "path": _ref_path(value, where)}
        if all(hasattr(value, a) for a in ("indptr", "indices", "data", "shape", "format")):  # scipy.sparse
            return {"__type__": "sparse", "format": value.format, "shape": list(value.shape),
                    "data": self.array(value.data, where + ".data"), "indices": self.array(value.indices, where),
                    "indptr": self.array(value.indptr, where)}
        return self.object(value, where)

    def object(self, value, where):
        cls = type(value)
        if id(value) in self.memo:
            return {"__type__": "memo", "id": self.memo[id(value)][0]}
        index = f"o{len(self.memo)}"
        self.memo[id(value)] = (index, value)
        if isinstance(value, Tensor):
            state = {"data": self.array(value.data, where), "requires_grad": bool(value.requires_grad)}
            return {"__type__": "tensor", "class": _class_path(cls), "id": index, "state": state}
        if isinstance(value, tuple):  # a namedtuple
            return {"__type__": "namedtuple", "class": _class_path(cls), "id": index,
                    "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        state = {}
        if hasattr(value, "__dict__"):
            state.update(vars(value))
        for klass in cls.__mro__:
            for slot in getattr(klass, "__slots__", ()):
                if slot not in ("__dict__", "__weakref__") and hasattr(value, slot):
                    state[slot] = getattr(value, slot)
        if not state and not hasattr(value, "__dict__"):
            raise TypeError(f"save: cannot save {where} of type {cls.__name__} (no attributes to record)")
        encoded = {k: self.encode(v, f"{where}.{k}") for k, v in state.items()
                   if not (k in ("_forward_hooks", "_forward_pre_hooks"))}
        return {"__type__": "object", "class": _class_path(cls), "id": index, "state": encoded}


# ---- loading ----------------------------------------------------------------------------------------------------
def load(path, like=None, classes=()):
    """The model saved at `path`. `like`: a model the file must match (module names, classes, array shapes).

    classes: extra classes (defined outside minicompress, e.g. your own Module subclasses) allowed in the file.
    """
    path = os.fspath(path)
    meta, arrays = read(path)
    decoder = _Decoder(path, arrays, {_class_path(c): c for c in classes})
    model = decoder.decode(meta["tree"])
    if like is not None:
        check_same_architecture(like, model, path)
    return model


def read(path):
    """(metadata dict, {key: array}) of a saved model file, every array checked against its checksum."""
    if not os.path.exists(path):
        raise ValueError(f"load: no file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            files = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise ValueError(f"load: {path!r} is not a readable .npz file -- truncated or corrupt? "
                         f"({type(exc).__name__}: {exc})") from None
    if META_KEY not in files:
        raise ValueError(f"load: {path!r} has no minicompress metadata; it is not a file written by "
                         "mc.report.save (a plain state_dict .npz loads with model.load_state_dict(path))")
    try:
        meta = json.loads(files.pop(META_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"load: {path!r}: the metadata is corrupt ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"load: {path!r}: unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    if meta.get("version") != VERSION:
        raise ValueError(f"load: {path!r} was written by format version {meta.get('version')}; this minicompress "
                         f"reads version {VERSION}")
    expected = meta.get("arrays", {})
    missing = sorted(set(expected) - set(files))
    extra = sorted(set(files) - set(expected))
    if missing or extra:
        raise ValueError(f"load: {path!r} does not match its metadata: arrays missing {missing}, unexpected {extra}")
    for key, info in expected.items():
        arr = files[key]
        if list(arr.shape) != info["shape"] or arr.dtype.str != info["dtype"]:
            raise ValueError(f"load: {path!r}: array {key} ({info['where']}) is {arr.dtype.str}{list(arr.shape)}, "
                             f"the metadata says {info['dtype']}{info['shape']}")
        if _digest(arr) != info["sha256"]:
            raise ValueError(f"load: {path!r}: array {key} ({info['where']}) fails its checksum -- the file is corrupt")
    return meta, files


class _Decoder:
    def __init__(self, path, arrays, extra_classes):
        self.path, self.arrays, self.extra, self.memo = path, arrays, extra_classes, {}

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or "__type__" not in node:
            raise ValueError(f"load: {self.path!r}: corrupt model tree near {str(node)[:80]}")
        kind = node["__type__"]
        if kind == "ndarray":
            return self.arrays[node["key"]].copy()
        if kind == "npscalar":
            return np.dtype(node["dtype"]).type(node["value"])
        if kind == "dtype":
            return np.dtype(node["str"])
        if kind in ("list", "tuple"):
            items = [self.decode(v) for v in node["items"]]
            return items if kind == "list" else tuple(items)
        if kind in ("dict", "odict"):
            pairs = [(self.decode(k), self.decode(v)) for k, v in node["items"]]
            return collections.OrderedDict(pairs) if kind == "odict" else dict(pairs)
        if kind == "ref":
            return self.resolve(node["path"])
        if kind == "sparse":
            import scipy.sparse
            make = {"csr": scipy.sparse.csr_matrix, "csc": scipy.sparse.csc_matrix}.get(node["format"])
            if make is None:
                raise ValueError(f"load: {self.path!r}: unsupported sparse format {node['format']!r}")
            return make((self.decode(node["data"]), self.decode(node["indices"]), self.decode(node["indptr"])),
                        shape=tuple(node["shape"]))
        if kind == "memo":
            return self.memo[node["id"]]
        if kind == "tensor":
            cls = self.resolve_class(node["class"])
            t = cls._wrap(self.decode(node["state"]["data"]), bool(node["state"]["requires_grad"]))
            self.memo[node["id"]] = t
            return t
        if kind == "namedtuple":
            cls = self.resolve_class(node["class"])
            obj = cls._make(self.decode(v) for v in node["items"])
            self.memo[node["id"]] = obj
            return obj
        if kind == "object":
            cls = self.resolve_class(node["class"])
            obj = cls.__new__(cls)
            self.memo[node["id"]] = obj
            state = {k: self.decode(v) for k, v in node["state"].items()}
            if "_parameters" in state:  # a Module: hooks are not saved
                state.setdefault("_forward_hooks", collections.OrderedDict())
                state.setdefault("_forward_pre_hooks", collections.OrderedDict())
            for k, v in state.items():
                if hasattr(obj, "__dict__"):
                    obj.__dict__[k] = v
                else:
                    object.__setattr__(obj, k, v)
            return obj
        raise ValueError(f"load: {self.path!r}: unknown node type {kind!r} in the model tree")

    def resolve_class(self, path):
        obj = self.resolve(path)
        if not isinstance(obj, type):
            raise ValueError(f"load: {self.path!r}: {path} is not a class")
        return obj

    def resolve(self, path):
        if path in self.extra:
            return self.extra[path]
        module_name, _, qualname = path.partition(":")
        if module_name.split(".")[0] != ALLOWED_PACKAGE:
            raise ValueError(f"load: {self.path!r} refers to {path}, outside the minicompress package; pass the "
                             f"class with load(..., classes=[...]) if you trust this file")
        try:
            obj = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"load: {self.path!r} needs {path}, which this minicompress does not have ({exc})") \
                from None
        return obj


def check_same_architecture(expected, model, path="model"):
    """ValueError listing every module whose class differs and every array whose shape differs."""
    a = {n: type(m).__name__ for n, m in expected.named_modules()}
    b = {n: type(m).__name__ for n, m in model.named_modules()}
    problems = [f"module {n or '(root)'}: {a.get(n, 'absent')} expected, file has {b.get(n, 'absent')}"
                for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n)]
    sa, sb = expected.state_dict(), model.state_dict()
    problems += [f"{k}: shape {np.shape(sa[k])} expected, file has {np.shape(sb[k])}"
                 for k in sorted(set(sa) & set(sb)) if np.shape(sa[k]) != np.shape(sb[k])]
    if problems:
        raise ValueError(f"load: {path!r} does not match the expected model:\n  " + "\n  ".join(problems[:20]))


# ---- helpers ----------------------------------------------------------------------------------------------------
_SKIP = object()


def _plain(v):
    """A JSON-able summary of a simple attribute, or _SKIP for arrays / objects."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if np.isfinite(v) else str(v)
    if isinstance(v, np.generic) and v.size == 1:
        return _plain(v.item())
    if isinstance(v, (tuple, list)) and all(_plain(x) is not _SKIP for x in v):
        return [_plain(x) for x in v]
    if isinstance(v, dict) and all(isinstance(k, str) and _plain(x) is not _SKIP for k, x in v.items()):
        return {k: _plain(x) for k, x in v.items()}
    return _SKIP


def _is_function(value):
    import types
    return isinstance(value, (types.FunctionType, types.BuiltinFunctionType))


def _class_path(cls):
    """'module:QualName' -- recorded for any class; load() imports only minicompress's (or `classes=`)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _ref_path(value, where):
    module = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None)
    if not module or not qualname or "<lambda>" in qualname or "<locals>" in qualname:
        raise TypeError(f"save: {where} is {value!r}, which is not a module-level function or class; "
                        "only named functions / classes can be saved (by reference)")
    return f"{module}:{qualname}"


def _digest(arr):
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256(arr.dtype.str.encode())
    h.update(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


__all__ = ["save", "load", "read", "architecture", "check_same_architecture"]
