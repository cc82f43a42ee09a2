"""Configurations: what the tuner searches over, as plain dicts.

A configuration says, for every tunable operator (a Linear or Conv2d module, by its dotted name), how to run it:

    {"0":    {"dtype": "int8", "scheme": "sym", "granularity": "per_channel", "observer": "minmax"},
     "2":    {"dtype": "fp32"},                    # fallback: this operator stays in float
     "attn": {"dtype": "bf16"}}                    # fallback: float weights, bf16 compute (autocast)

    dtype        "int8" | "int4" (quantized weights and activations) | "bf16" | "fp32" (fallbacks)
    scheme       weight quantization: "sym" (zero point 0) or "asym" (affine)         -- int dtypes only
    granularity  weight scales: "per_tensor" or "per_channel" (one per output channel) -- int dtypes only
    observer     how activation ranges are calibrated: "minmax", "moving_average", "histogram",
                 "percentile", "mse", "entropy"                                        -- int dtypes only

Activations are always quantized affine per tensor (unsigned 8 bits, as PyTorch's fbgemm backend). A
*recipe* is the (scheme, granularity, observer) triple; the strategies try a few recipes for the whole model
before falling operators back one by one (Neural Compressor's "each trial tries observers and granularities").

Reference: Intel Neural Compressor's tuning space (op-wise `{"weight": {...}, "activation": {...}}` dicts).
"""
import json

DTYPES = ("int8", "int4", "bf16", "fp32")
INT_DTYPES = ("int8", "int4")
SCHEMES = ("sym", "asym")
GRANULARITIES = ("per_tensor", "per_channel")
OBSERVERS = ("minmax", "moving_average", "histogram", "percentile", "mse", "entropy")
BITS = {"int4": 4, "int8": 8, "bf16": 16, "fp32": 32}

DEFAULT_RECIPE = {"scheme": "sym", "granularity": "per_channel", "observer": "minmax"}
# the recipes the basic strategy tries for the whole model, in order (the default first)
DEFAULT_RECIPES = (
    DEFAULT_RECIPE,
    {"scheme": "asym", "granularity": "per_tensor", "observer": "minmax"},
    {"scheme": "sym", "granularity": "per_channel", "observer": "histogram"},
)
TUNABLE_TYPES = ("Linear", "Conv2d")  # class names of the modules the quantizer can replace


def tunable_ops(model, types=TUNABLE_TYPES):
    """Dotted names of the leaf modules the tuner may quantize, in model (definition) order."""
    names = [name for name, m in model.named_modules() if name and type(m).__name__ in types]
    if not names:
        raise ValueError(f"autotune: {type(model).__name__} has no tunable operators (no module of type "
                         f"{', '.join(types)})")
    return names


def op_config(dtype="int8", recipe=None):
    """The configuration of one operator; float dtypes carry no quantization keys."""
    check_dtype(dtype)
    if dtype not in INT_DTYPES:
        return {"dtype": dtype}
    recipe = dict(DEFAULT_RECIPE if recipe is None else recipe)
    check_recipe(recipe)
    return {"dtype": dtype, **recipe}


def uniform_config(ops, dtype="int8", recipe=None):
    """Every operator in `ops` at `dtype` with the same recipe (the tuner's first trial is all-INT8)."""
    return {name: op_config(dtype, recipe) for name in ops}


def with_ops(config, names, dtype, recipe=None):
    """A copy of `config` with the operators in `names` set to `dtype` (e.g. a fallback to "fp32")."""
    out = {k: dict(v) for k, v in config.items()}
    for name in names:
        if name not in out:
            raise ValueError(f"with_ops: no operator {name!r} in the configuration (has {sorted(out)})")
        current_recipe = {k: v for k, v in out[name].items() if k != "dtype"} or None
        out[name] = op_config(dtype, recipe if recipe is not None else current_recipe)
    return out


def config_diff(config, reference):
    """{op: {key: value}} for the keys of `config` that differ from `reference` (an all-INT8 configuration)."""
    diff = {}
    for name, entry in config.items():
        ref = reference.get(name, {})
        changed = {k: v for k, v in entry.items() if ref.get(k) != v}
        if entry.get("dtype") not in INT_DTYPES:
            changed = {"dtype": entry["dtype"]} if ref.get("dtype") != entry["dtype"] else {}
        if changed:
            diff[name] = changed
    return diff


def describe_diff(diff, n_ops=None):
    """A short human string for a configuration diff: 'fc2->fp32; conv1->bf16', 'all->asym/per_tensor'.

    Operators with the same change are grouped; a change made to all `n_ops` operators reads 'all->...'."""
    if not diff:
        return "all int8 (default recipe)"
    groups = {}
    for name, changed in diff.items():
        groups.setdefault("/".join(str(v) for v in changed.values()), []).append(name)
    parts = []
    for change, names in groups.items():
        who = "all" if n_ops is not None and len(names) == n_ops else ",".join(names)
        parts.append(f"{who}->{change}")
    return "; ".join(parts)


def config_key(config):
    """A hashable, order-independent key (so a strategy proposing the same configuration twice costs nothing)."""
    return json.dumps(config, sort_keys=True)


def weight_bits(config, op_params=None):
    """Total weight bits of a configuration: sum over ops of bits(dtype) * number of weights (1 if unknown)."""
    op_params = op_params or {}
    return sum(BITS[entry["dtype"]] * op_params.get(name, 1) for name, entry in config.items())


def check_dtype(dtype):
    if dtype not in DTYPES:
        raise ValueError(f"configuration: dtype must be one of {DTYPES}, got {dtype!r}")


def check_recipe(recipe):
    for key, allowed in (("scheme", SCHEMES), ("granularity", GRANULARITIES), ("observer", OBSERVERS)):
        if recipe.get(key) not in allowed:
            raise ValueError(f"configuration: {key} must be one of {allowed}, got {recipe.get(key)!r}")
    extra = set(recipe) - {"scheme", "granularity", "observer"}
    if extra:
        raise ValueError(f"configuration: unknown recipe keys {sorted(extra)} "
                         "(expected scheme, granularity, observer)")


def check_config(config, ops=None):
    """Validate a configuration dict; `ops` (if given) must be exactly its keys."""
    if not isinstance(config, dict):
        raise TypeError(f"configuration must be a dict {{op_name: {{'dtype': ...}}}}, got {type(config).__name__}")
    if ops is not None and set(config) != set(ops):
        missing, extra = sorted(set(ops) - set(config)), sorted(set(config) - set(ops))
        raise ValueError(f"configuration: operators missing {missing}, unknown {extra}")
    for name, entry in config.items():
        if not isinstance(entry, dict) or "dtype" not in entry:
            raise ValueError(f"configuration[{name!r}] must be a dict with a 'dtype' key, got {entry!r}")
        check_dtype(entry["dtype"])
        if entry["dtype"] in INT_DTYPES:
            check_recipe({k: v for k, v in entry.items() if k != "dtype"})
        elif set(entry) != {"dtype"}:
            raise ValueError(f"configuration[{name!r}]: a {entry['dtype']} operator takes only 'dtype', got {entry!r}")
    return config
