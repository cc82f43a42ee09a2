"""The workflows: static PTQ (prepare -> calibrate -> convert), QAT (prepare_qat -> train -> convert),
dynamic PTQ (quantize_dynamic), and simulate (the fake-quantized twin of a prepared model).

prepare(model, qconfig, *, overrides=None)  a deep copy in which
    - inside a Sequential, Conv2d followed by BatchNorm2d has the BN folded into the conv (fold_bn_into_conv)
      and Linear / Conv2d followed by ReLU is fused (the ReLU becomes an Identity);
    - every Linear / Conv2d with a qconfig becomes an `Observed` (input, weight, output observers); inside a
      Sequential a layer's input observer IS the previous quantized layer's output observer when only
      Flatten / MaxPool2d / ReLU / Dropout stand between them, so both use one (scale, zero_point);
    - every FloatFunctional becomes an ObservedAdd;
    - every nn.MultiheadAttention whose qconfig is an AttentionQConfig (quantized_attention.attention_qconfig)
      becomes an ObservedMultiheadAttention, and convert makes it a QuantizedMultiheadAttention (both bmm's on
      int8 codes); with a plain QConfig only its out_proj is quantized, as before.
    overrides = {module_name: QConfig or None}: the longest matching dotted prefix wins; None = float.
Calibration is just calling the prepared model on batches. convert(prepared) -> integer model (quantized.py).
"""
import copy

import numpy as np

from .. import nn
from ..nn.containers import Sequential
from ..nn.module import Module
from .dynamic_attention import DynamicQuantizedMultiheadAttention
from .quantized_attention import AttentionQConfig, ObservedMultiheadAttention, QuantizedMultiheadAttention
from .fuse import fold_bn_into_conv
from .qat import ConvBn2d
from .modules import FixedFakeQuantize, FloatFunctional, Identity, Observed, ObservedAdd
from .qconfig import QConfig, check_overrides, default_dynamic_qconfig, qconfig_for
from . import quantized as Q


def _cls(name):
    return getattr(nn, name, None)


def quantizable_types():
    """{class: kind} of the layers static quantization replaces (a plain dict)."""
    pairs = ((_cls("Linear"), "linear"), (_cls("Conv2d"), "conv2d"), (ConvBn2d, "conv_bn2d"))
    return {c: k for c, k in pairs if c is not None}


def _transparent(m):
    """Modules that act on integer codes directly (their qparams pass through)."""
    names = ("Flatten", "Unflatten", "ReLU", "Dropout", "Identity")
    if type(m) is _cls("MaxPool2d"):
        return (Q._pair(getattr(m, "dilation", 1)) == (1, 1) and not getattr(m, "ceil_mode", False)
                and not getattr(m, "return_indices", False))
    return any(_cls(n) is not None and type(m) is _cls(n) for n in names) or isinstance(m, Identity)


def _check_model(model, who):
    if not isinstance(model, Module):
        raise TypeError(f"{who}: model must be an nn.Module, got {type(model).__name__}")


def _check_qconfig(qconfig, who, allow_none=False):
    if qconfig is None and allow_none:
        return
    if not isinstance(qconfig, QConfig):
        raise TypeError(f"{who}: qconfig must be a QConfig (e.g. mc.quant.per_channel_qconfig), "
                        f"got {type(qconfig).__name__}")


def _check_explicit_overrides(model, overrides, types, who):
    """An explicit (non-None) override on a module we cannot quantize is an error, not a silent no-op."""
    for name, qc in (overrides or {}).items():
        if qc is None:
            continue
        m = model.get_submodule(name)
        supported = type(m) in types or isinstance(m, FloatFunctional) or bool(m._modules)
        if not supported:
            raise ValueError(f"{who}: overrides['{name}'] gives a QConfig to a {type(m).__name__}, which has no "
                             f"quantized version (supported: {', '.join(t.__name__ for t in types)}, "
                             f"FloatFunctional, or a container of them); use None to keep it in float")


def prepare(model, qconfig, *, overrides=None, inplace=False, qat=False, freeze_bn_step=None):
    """Static PTQ step 1: a copy of `model` with observers (see module docstring). `model` is not changed."""
    _check_model(model, "prepare")
    _check_qconfig(qconfig, "prepare", allow_none=True)
    check_overrides(model, overrides, "prepare")
    types = quantizable_types()
    _check_explicit_overrides(model, overrides, types, "prepare")
    prepared = model if inplace else copy.deepcopy(model)
    _fold_and_fuse(prepared, qconfig, overrides, qat, freeze_bn_step)
    count = _attach(prepared, qconfig, overrides, types)
    if count == 0:
        raise ValueError("prepare: nothing to quantize -- no Linear / Conv2d / FloatFunctional has a qconfig "
                         "(is the qconfig None, or does every override say None?)")
    return prepared


def _fold_and_fuse(model, qconfig, overrides, qat=False, freeze_bn_step=None):
    conv, bn2d, relu = _cls("Conv2d"), _cls("BatchNorm2d"), _cls("ReLU")
    for seq_name, seq in list(model.named_modules()):
        if not isinstance(seq, Sequential):
            continue
        keys = list(seq._modules)
        for i, key in enumerate(keys[:-1]):
            name = f"{seq_name}.{key}" if seq_name else key
            if qconfig_for(name, qconfig, overrides) is None:
                continue
            m, nxt = seq._modules[key], seq._modules[keys[i + 1]]
            if conv is not None and bn2d is not None and type(m) is conv and type(nxt) is bn2d:
                if qat:                                             # conv, bn -> ConvBn2d (folded while training)
                    seq._modules[key] = ConvBn2d(m, nxt, freeze_bn_step)
                else:                                               # conv, bn -> conv'
                    seq._modules[key] = fold_bn_into_conv(m, nxt)
                seq._modules[keys[i + 1]] = Identity("BatchNorm2d folded into the previous conv")


def _attach(model, qconfig, overrides, types):
    count = _attach_attention(model, qconfig, overrides)
    relu = _cls("ReLU")
    for seq_name, parent in list(model.named_modules()):
        if isinstance(parent, (Observed, ObservedAdd, ConvBn2d, ObservedMultiheadAttention)):
            continue
        keys = list(parent._modules)
        shared = None  # the output observer of the last quantized layer in this Sequential run
        for i, key in enumerate(keys):
            m = parent._modules[key]
            name = f"{seq_name}.{key}" if seq_name else key
            qc = qconfig_for(name, qconfig, overrides)
            if m is None:
                continue
            if isinstance(m, FloatFunctional) and qc is not None:
                parent._modules[key] = ObservedAdd(qc, name)
                count += 1
                shared = None
            elif type(m) in types and qc is not None:
                in_seq = isinstance(parent, Sequential)
                j = i + 1                                # skip the placeholder of a folded BatchNorm
                while in_seq and j < len(keys) and isinstance(parent._modules[keys[j]], Identity):
                    j += 1
                nxt = parent._modules[keys[j]] if in_seq and j < len(keys) else None
                fuse_relu = relu is not None and type(nxt) is relu
                input_observer = shared if (in_seq and shared is not None) else qc.activation()
                obs = Observed(m, qc, input_observer, relu=fuse_relu, name=name)
                parent._modules[key] = obs
                if fuse_relu:
                    parent._modules[keys[j]] = Identity("ReLU fused into the previous layer")
                shared = obs.output_observer if in_seq else None
                count += 1
            elif not (isinstance(parent, Sequential) and _transparent(m)):
                shared = None
    return count


def _attach_attention(model, qconfig, overrides):
    """nn.MultiheadAttention whose qconfig is an AttentionQConfig -> ObservedMultiheadAttention (the integer
    bmm's); with a plain QConfig the attention is left to _attach (only its out_proj is quantized)."""
    mha_cls, count = _cls("MultiheadAttention"), 0
    for name, m in list(model.named_modules()):
        qc = qconfig_for(name, qconfig, overrides)
        if mha_cls is not None and type(m) is mha_cls and isinstance(qc, AttentionQConfig):
            if not name:
                raise ValueError("prepare: the model itself is a MultiheadAttention; wrap it in a Module "
                                 "(e.g. nn.Sequential) to quantize it statically")
            model.set_submodule(name, ObservedMultiheadAttention(m, qc, name))
            count += 1
    return count


def _inner_observer(o):
    """FakeQuantize -> its observer; an observer -> itself."""
    return getattr(o, "activation_post_process", o)


def _act_qparams(observer, who, what):
    obs = _inner_observer(observer)
    if hasattr(obs, "has_data") and not obs.has_data():
        raise ValueError(f"convert: layer '{who}' has no calibration data for its {what} "
                         f"({type(obs).__name__}); run calibration batches through the prepared model first")
    scale, zp = observer.calculate_qparams()
    scale, zp = np.asarray(scale).reshape(-1)[0], np.asarray(zp).reshape(-1)[0]
    try:
        return Q.QuantParams(scale, zp, obs.quant_min, obs.quant_max, getattr(obs, "dtype", "?"),
                             getattr(obs, "qscheme", "?"), type(obs).__name__)
    except ValueError as exc:
        raise ValueError(f"convert: layer '{who}' ({what}): {exc}") from None


def _weight_qparams(obs_module, weight, who):
    wobs = obs_module.weight_observer
    inner = _inner_observer(wobs)
    if hasattr(inner, "has_data") and not inner.has_data():
        wobs(weight)  # weights are known: observe them now (PTQ observes weights at convert, as torch)
    scale, zp = wobs.calculate_qparams()
    info = dict(qmin=inner.quant_min, qmax=inner.quant_max, dtype=getattr(inner, "dtype", "?"),
                qscheme=getattr(inner, "qscheme", "?"), observer=type(inner).__name__)
    return scale, zp, info


def _convert_observed(m):
    module = m.module.folded() if isinstance(m.module, ConvBn2d) else m.module
    in_qp = _act_qparams(m.input_observer, m.layer_name, "input")
    out_qp = _act_qparams(m.output_observer, m.layer_name, "output")
    w_scale, w_zp, info = _weight_qparams(m, m.module.weight, m.layer_name)
    cls = Q.QuantizedLinear if type(module).__name__ == "Linear" else Q.QuantizedConv2d
    return cls(module, w_scale, w_zp, info, in_qp, out_qp, relu=m.relu, name=m.layer_name)


def convert(prepared, inplace=False):
    """Static PTQ step 3: replace every Observed by its integer module (see quantized.py)."""
    _check_model(prepared, "convert")
    observed = [(n, m) for n, m in prepared.named_modules() if isinstance(m, (Observed, ObservedAdd))]
    if not observed:
        raise ValueError("convert: this model has no prepared layers, so nothing would be quantized; "
                         "call mc.quant.prepare(model, qconfig) (and calibrate) or prepare_qat first")
    model = prepared if inplace else copy.deepcopy(prepared)
    for name, m in [(n, m) for n, m in model.named_modules() if isinstance(m, ObservedMultiheadAttention)]:
        model.set_submodule(name, _convert_attention(m))
    for name, m in [(n, m) for n, m in model.named_modules() if isinstance(m, (Observed, ObservedAdd))]:
        if isinstance(m, Observed):
            new = _convert_observed(m)
        else:
            new = Q.QuantizedAdd(_act_qparams(m.observer_a, name, "first input"),
                                 _act_qparams(m.observer_b, name, "second input"),
                                 _act_qparams(m.output_observer, name, "output"), name)
        model.set_submodule(name, new)
    _link_sequentials(model)
    model.eval()
    return model


def _convert_attention(m):
    """ObservedMultiheadAttention -> QuantizedMultiheadAttention (the context's qparams: out_proj's input)."""
    who = m.layer_name
    qps = [_act_qparams(o, who, what) for o, what in ((m.q_observer, "Q"), (m.k_observer, "K"),
                                                       (m.v_observer, "V"), (m.attn_observer, "attention"))]
    return QuantizedMultiheadAttention(m, *qps, _convert_observed(m.out_proj))


def _link_sequentials(model):
    """Inside each Sequential: integer twins for transparent modules inside runs, and QTensor hand-over."""
    integer = (Q.QuantizedLinear, Q.QuantizedConv2d)
    for _, seq in list(model.named_modules()):
        if not isinstance(seq, Sequential):
            continue
        keys = list(seq._modules)
        for i, key in enumerate(keys):
            m = seq._modules[key]
            if isinstance(m, integer):
                j = i + 1
                while j < len(keys) and _transparent(seq._modules[keys[j]]) or \
                        j < len(keys) and isinstance(seq._modules[keys[j]], Q.INTEGER_PASSTHROUGH):
                    t = seq._modules[keys[j]]
                    seq._modules[keys[j]] = _integer_twin(t)
                    j += 1
                m.output_quantized = j < len(keys) and isinstance(seq._modules[keys[j]], integer)


def _integer_twin(m):
    if isinstance(m, Q.INTEGER_PASSTHROUGH):
        return m
    kind = type(m).__name__
    if kind == "ReLU":
        return Q.QuantizedReLU()
    if kind == "Flatten":
        return Q.QuantizedFlatten(getattr(m, "start_dim", 1), getattr(m, "end_dim", -1))
    if kind == "Unflatten":
        return Q.QuantizedUnflatten(m.dim, m.unflattened_size)
    if kind == "MaxPool2d":
        return Q.QuantizedMaxPool2d(m)
    return Q.QuantizedIdentity() if kind == "Dropout" else m


def simulate(prepared):
    """The fake-quantized twin of convert(prepared): float model with every observer replaced by
    FixedFakeQuantize holding the same qparams (input, per-channel weight, output)."""
    model = copy.deepcopy(prepared)
    done = {}

    def fixed(observer, who, what, weight=None):
        if id(observer) in done:
            return done[id(observer)]
        if weight is not None:
            inner = _inner_observer(observer)
            if hasattr(inner, "has_data") and not inner.has_data():
                observer(weight)
        else:
            _act_qparams(observer, who, what)
        inner = _inner_observer(observer)
        scale, zp = observer.calculate_qparams()
        per_channel = weight is not None and getattr(inner, "is_per_channel", False)
        if not per_channel:
            scale, zp = np.asarray(scale).reshape(-1)[0], int(np.asarray(zp).reshape(-1)[0])
        done[id(observer)] = FixedFakeQuantize(scale, zp, inner.quant_min, inner.quant_max,
                                               axis=inner.ch_axis if per_channel else None)
        return done[id(observer)]

    for name, m in model.named_modules():
        if isinstance(m, Observed):
            m.input_observer = fixed(m.input_observer, name, "input")
            m.weight_observer = fixed(m.weight_observer, name, "weight", weight=m.module.weight)
            m.output_observer = fixed(m.output_observer, name, "output")
            if not isinstance(m.module, ConvBn2d):
                m.bias_scale = (np.float64(m.input_observer.scale) *
                                np.asarray(m.weight_observer.scale, dtype=np.float64).reshape(-1))
        elif isinstance(m, ObservedMultiheadAttention):
            m.q_observer = fixed(m.q_observer, name, "Q")
            m.k_observer = fixed(m.k_observer, name, "K")
            m.v_observer = fixed(m.v_observer, name, "V")
            m.attn_observer = fixed(m.attn_observer, name, "attention")
        elif isinstance(m, ObservedAdd):
            m.observer_a = fixed(m.observer_a, name, "first input")
            m.observer_b = fixed(m.observer_b, name, "second input")
            m.output_observer = fixed(m.output_observer, name, "output")
    return model.eval()


def prepare_qat(model, qconfig, *, overrides=None, freeze_bn_step=None):
    """QAT: prepare with FakeQuantize factories (e.g. default_qat_qconfig); the copy is in training mode.
    Conv2d + BatchNorm2d in a Sequential become a ConvBn2d (BN folded into the fake-quantized weight while
    training; statistics frozen after `freeze_bn_step` steps). Train it (mc.train.fit), then convert()."""
    _check_qconfig(qconfig, "prepare_qat")
    prepared = prepare(model, qconfig, overrides=overrides, qat=True, freeze_bn_step=freeze_bn_step)
    return prepared.train()


def _dynamic_linear(m, qc, per_row, name, relu=False):
    obs = qc.weight()
    obs(m.weight)
    scale, zp = obs.calculate_qparams()
    inner = _inner_observer(obs)
    info = dict(qmin=inner.quant_min, qmax=inner.quant_max, dtype=inner.dtype, qscheme=inner.qscheme,
                observer=type(inner).__name__)
    return Q.DynamicQuantizedLinear(m, scale, zp, info, per_row=per_row, name=name, relu=relu)


def _relu_after(model, name):
    """True when `name` sits in a Sequential and the next module is a ReLU: dynamic quantization then fuses it
    into the Linear (as PyTorch's dynamic LinearReLU), replacing the ReLU by an Identity placeholder."""
    parent_name, _, key = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    relu = _cls("ReLU")
    if not isinstance(parent, Sequential) or relu is None:
        return False
    keys = list(parent._modules)
    i = keys.index(key)
    if i + 1 < len(keys) and type(parent._modules[keys[i + 1]]) is relu:
        parent._modules[keys[i + 1]] = Identity("ReLU fused into the previous layer")
        return True
    return False


def quantize_dynamic(model, qconfig=None, *, overrides=None, per_row=False):
    """Dynamic PTQ: a copy whose Linear layers are DynamicQuantizedLinear and whose MultiheadAttention modules
    are DynamicQuantizedMultiheadAttention (packed in-projection and out_proj quantized). qconfig.weight gives
    the weight observer (default: per-channel qint8); per_row=True measures each row's range at run time.
    A ReLU that follows a Linear in a Sequential is fused into it (applied in the GEMM's output pass)."""
    _check_model(model, "quantize_dynamic")
    qconfig = default_dynamic_qconfig if qconfig is None else qconfig
    _check_qconfig(qconfig, "quantize_dynamic")
    check_overrides(model, overrides, "quantize_dynamic")
    linear = _cls("Linear")
    _check_explicit_overrides(model, overrides, {linear: "linear"}, "quantize_dynamic")
    out = copy.deepcopy(model)
    count, done = 0, []
    mha_cls = _cls("MultiheadAttention")
    for name, m in list(out.named_modules()):
        if any(name.startswith(d + ".") for d in done):
            continue                              # inside an attention module already replaced
        qc = qconfig_for(name, qconfig, overrides)
        if qc is None:
            continue
        if mha_cls is not None and type(m) is mha_cls:
            in_proj = nn.Linear(m.embed_dim, 3 * m.embed_dim, bias=m.in_proj_bias is not None)
            in_proj.weight.data = m.in_proj_weight.data
            if m.in_proj_bias is not None:
                in_proj.bias.data = m.in_proj_bias.data
            new = DynamicQuantizedMultiheadAttention(m, _dynamic_linear(in_proj, qc, per_row, name + ".in_proj"),
                                                     _dynamic_linear(m.out_proj, qc, per_row, name + ".out_proj"))
            out.set_submodule(name, new) if name else None
            done.append(name)
            count += 2
        elif type(m) is linear:
            fuse = bool(name) and _relu_after(out, name)
            out.set_submodule(name, _dynamic_linear(m, qc, per_row, name, relu=fuse))
            count += 1
    if count == 0:
        raise ValueError("quantize_dynamic: nothing to quantize -- the model has no Linear layer with a qconfig")
    return out.eval()
