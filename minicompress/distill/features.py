"""Intermediate-layer distillation: match hidden features (FitNets) and attention maps (TinyBERT / MiniLM).

FitNets (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015): the student's hidden output h_s at a
"guided" layer should predict the teacher's h_t at a "hint" layer. Where the widths differ, a learnable
linear regressor r (no bias) maps the student's width to the teacher's:

    L_feat = Σ_pairs mean((r(h_s) - h_t)²)          h: (N, ..., C) -> r acts on the last axis
                                                    h: (N, C, H, W) -> r acts on the channel axis (a 1x1 conv)

Attention transfer for transformers (TinyBERT, Jiao et al. 2020: MSE of attention maps; MiniLM, Wang et al.
2020: KL between attention distributions). With head-averaged maps A (N, L, S), rows summing to 1:

    L_attn = mean over rows of KL(A_t ‖ A_s) = (1/(N L)) Σ Σ_s A_t log(A_t / A_s)      (kind="kl")
           or mean((A_s - A_t)²)                                                         (kind="mse")

How the features are caught: forward hooks on the named submodules store their outputs during the normal
forward passes (`Distiller` runs student and teacher; this module never runs a model itself). For an
`nn.MultiheadAttention`, the hook calls the module's `forward` once more on the same inputs with
need_weights=True to obtain its (differentiable) head-averaged attention weights -- the encoder layers ask
for need_weights=False, as PyTorch's do.
"""
import numpy as np

from ..core import Tensor
from ..nn import Linear, Module, ModuleList, MultiheadAttention
from ..nn import functional as F


def _first_tensor(out):
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"feature distillation: a hooked layer returned {type(out).__name__}, expected a Tensor")


def _get(model, name, which):
    try:
        return model.get_submodule(name)
    except (AttributeError, KeyError, IndexError, ValueError) as exc:
        names = [n for n, _ in model.named_modules() if n]
        raise ValueError(f"feature distillation: the {which} has no submodule {name!r}; it has {names}") from exc


class _Catcher:
    """Forward hooks that store each named module's output (or attention map) of the latest forward."""

    def __init__(self, model, names, which, attention=False):
        self.outputs, self.handles = {}, []
        for name in names:
            module = _get(model, name, which)
            if attention and not isinstance(module, MultiheadAttention):
                raise TypeError(f"attention distillation: {which} layer {name!r} is a {type(module).__name__}, "
                                "expected nn.MultiheadAttention")
            self.handles.append(module.register_forward_hook(self._hook(name, attention)))

    def _hook(self, name, attention):
        def hook(module, args, out):
            if attention:
                query = args[0]
                key = args[1] if len(args) > 1 else query
                value = args[2] if len(args) > 2 else key
                _, weights = module.forward(query, key, value, need_weights=True, average_attn_weights=True)
                self.outputs[name] = weights
            else:
                self.outputs[name] = _first_tensor(out)
        return hook

    def take(self, name):
        if name not in self.outputs:
            raise RuntimeError(f"feature distillation: layer {name!r} did not run in the last forward")
        return self.outputs.pop(name)

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []


def _width(model, name, which):
    module = _get(model, name, which)
    for attr in ("out_features", "out_channels", "embed_dim", "d_model", "num_features"):
        value = getattr(module, attr, None)
        if isinstance(value, (int, np.integer)):
            return int(value)
    shape = getattr(module, "normalized_shape", None)
    if shape is not None:
        return int(np.atleast_1d(shape)[-1])
    return None


class _PairedHooks(Module):
    """What both intermediate-layer distillers share: the (student, teacher) pair, kept as a tuple so that
    neither is registered as a submodule, and forward hooks that catch the paired layers' outputs
    (`attention=True`: the attention maps of MultiheadAttention layers)."""

    attention = False

    def __init__(self, student, teacher, pairs):
        super().__init__()
        self.pairs = dict(pairs)
        self._models = (student, teacher)
        self._catch_s = self._catch_t = None

    def attach(self):
        """Install the forward hooks (Distiller does this in on_train_begin)."""
        self.detach()
        student, teacher = self._models
        self._catch_s = _Catcher(student, list(self.pairs), "student", attention=self.attention)
        self._catch_t = _Catcher(teacher, list(self.pairs.values()), "teacher", attention=self.attention)
        return self

    def detach(self):
        for c in (self._catch_s, self._catch_t):
            if c is not None:
                c.remove()
        self._catch_s = self._catch_t = None


class FeatureDistiller(_PairedHooks):
    """FitNets hints: `pairs` = {student layer name: teacher layer name}; `projections` hold the regressors.

    Widths come from the layers (out_features, out_channels, ...) or from `widths` =
    {student layer: (student width, teacher width)} for layers without such an attribute (e.g. ReLU).
    Train the projections with the student: `Distiller` adds `parameters()` to the optimiser.
    """

    def __init__(self, student, teacher, pairs, widths=None):
        if not isinstance(pairs, dict) or not pairs:
            raise ValueError("FeatureDistiller: pairs must be a non-empty dict {student layer: teacher layer}")
        super().__init__(student, teacher, pairs)
        widths = dict(widths or {})
        self.projections = ModuleList()
        self._projection_index = {}
        for s_name, t_name in self.pairs.items():
            ws, wt = widths.get(s_name, (_width(student, s_name, "student"), _width(teacher, t_name, "teacher")))
            if ws is None or wt is None:
                raise ValueError(f"FeatureDistiller: cannot tell the width of student layer {s_name!r} or teacher "
                                 f"layer {t_name!r}; pass widths={{{s_name!r}: (student_width, teacher_width)}}")
            if ws != wt:
                self._projection_index[s_name] = len(self.projections)
                self.projections.append(Linear(ws, wt, bias=False))

    def project(self, s_name, h):
        if s_name not in self._projection_index:
            return h
        proj = self.projections[self._projection_index[s_name]]
        if h.ndim == 4:                                       # (N, C, H, W): a 1x1 conv on the channels
            return proj(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return proj(h)

    def loss(self):
        """Σ over pairs of mean((r(h_s) - h_t)²), from the outputs of the last student and teacher forwards."""
        if self._catch_s is None:
            raise RuntimeError("FeatureDistiller.loss: call attach() (or use it inside a Distiller) first")
        total = None
        for s_name, t_name in self.pairs.items():
            h_s = self.project(s_name, self._catch_s.take(s_name))
            h_t = self._catch_t.take(t_name).detach()
            if tuple(h_s.shape) != tuple(h_t.shape):
                raise ValueError(f"FeatureDistiller: student layer {s_name!r} gives {tuple(h_s.shape)} after "
                                 f"projection, teacher layer {t_name!r} gives {tuple(h_t.shape)}")
            term = F.mse_loss(h_s, h_t)
            total = term if total is None else total + term
        return total


def attention_map_loss(student_attn, teacher_attn, kind="kl", eps=1e-8):
    """KL(A_t ‖ A_s) averaged over rows (kind="kl") or mean squared difference ("mse"); maps (..., L, S)."""
    teacher = teacher_attn.data if isinstance(teacher_attn, Tensor) else np.asarray(teacher_attn)
    if tuple(student_attn.shape) != teacher.shape:
        raise ValueError(f"attention_map_loss: student map {tuple(student_attn.shape)} and teacher map "
                         f"{teacher.shape} must have the same shape (..., L, S)")
    if kind == "mse":
        return F.mse_loss(student_attn, Tensor(teacher, dtype=student_attn.dtype))
    if kind != "kl":
        raise ValueError(f"attention_map_loss: kind must be 'kl' or 'mse', got {kind!r}")
    rows = int(np.prod(teacher.shape[:-1]))
    t = Tensor(teacher, dtype=student_attn.dtype)
    log_t = Tensor(np.log(np.maximum(teacher, eps)), dtype=student_attn.dtype)
    return (t * (log_t - (student_attn + eps).log())).sum() / rows


class AttentionDistiller(_PairedHooks):
    """Attention-map transfer: `pairs` = {student MultiheadAttention name: teacher MultiheadAttention name}.

    Maps are head-averaged (N, L, S), so student and teacher may have different numbers of heads; the
    sequence lengths must agree. No parameters."""

    attention = True

    def __init__(self, student, teacher, pairs, kind="kl"):
        if not isinstance(pairs, dict) or not pairs:
            raise ValueError("AttentionDistiller: pairs must be a non-empty dict {student layer: teacher layer}")
        if kind not in ("kl", "mse"):
            raise ValueError(f"AttentionDistiller: kind must be 'kl' or 'mse', got {kind!r}")
        for s_name, t_name in pairs.items():
            for model, name, which in ((student, s_name, "student"), (teacher, t_name, "teacher")):
                if not isinstance(_get(model, name, which), MultiheadAttention):
                    raise TypeError(f"AttentionDistiller: {which} layer {name!r} is not an nn.MultiheadAttention")
        super().__init__(student, teacher, pairs)
        self.kind = kind

    def loss(self):
        if self._catch_s is None:
            raise RuntimeError("AttentionDistiller.loss: call attach() (or use it inside a Distiller) first")
        total = None
        for s_name, t_name in self.pairs.items():
            term = attention_map_loss(self._catch_s.take(s_name), self._catch_t.take(t_name).detach(), self.kind)
            total = term if total is None else total + term
        return total
