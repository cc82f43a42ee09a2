"""`Pruner`: owns the masks of a model's Linear/Conv2d weights and keeps pruned weights at exactly zero.

    pruner = Pruner(model, sparsity=0.9, pattern="unstructured",
                    schedule=make_schedule("agp", begin_step=0, end_step=300, frequency=10))
    mc.train.fit(model, data, callbacks=[pruner])   # masks grow with the schedule, pruned weights stay 0
    print(pruner.format_report())                   # per-layer and overall sparsity

At step t the target of layer l is `schedule(t, sparsity_l)` (no schedule: the full target at once).
When a target changes, new masks are computed from the criterion's scores (|w| by default; a callable
`criterion(model, layer_names) -> {name: element scores}` for Taylor / SNIP), per layer or, with
`scope="global"`, one threshold across layers (see masks.py). Once pruned, a weight stays pruned (a
schedule should never lower the sparsity). Through the training callbacks:

    on_train_begin / on_step_begin   update the masks if the schedule's target changed, apply them
    on_after_backward                grad <- grad * mask  (momentum and Adam never see a pruned gradient)
    on_step_end                      w <- w * mask        (whatever the optimiser did, pruned w = 0)

For the "channel" pattern a mask covers the whole channel: the weight row/filter, its bias and the
BatchNorm right after it (layers.py), so the channel's output is exactly 0 and `shrink` can remove it.
**Pattern lock** (`Pruner.lock_pattern(model)`, or `pruner.lock()`): the masks are frozen (taken from
the current zeros) and fine-tuning keeps exactly that sparsity pattern.
(Zhu & Gupta 2017; Distiller's pruner/scheduler split; Intel Neural Compressor's pattern_lock.)
"""
import numpy as np

from .layers import channel_params, prunable_layers
from .masks import check_pattern, check_sparsity, global_masks, magnitude_mask, parse_pattern


class Pruner:
    def __init__(self, model, sparsity=0.5, pattern="unstructured", *, layers=None, schedule=None,
                 scope="layer", criterion="magnitude", norm="l1"):
        if isinstance(sparsity, dict):
            if layers is not None:
                raise ValueError("Pruner: give per-layer targets either as a sparsity dict or with layers=, "
                                 "not both")
            layers = list(sparsity)
        self.model = model
        self.layers = prunable_layers(model, layers)
        self.pattern = pattern
        self.kind = parse_pattern(pattern)
        for name, layer in self.layers.items():
            check_pattern(layer.weight.shape, pattern, name)
        if self.kind[0] == "n:m":
            nm = 1.0 - self.kind[1] / self.kind[2]
            if sparsity is None:
                sparsity = nm
        if isinstance(sparsity, dict):
            self.targets = {name: check_sparsity(s, name) for name, s in sparsity.items()}
        else:
            self.targets = {name: check_sparsity(sparsity, name) for name in self.layers}
        if self.kind[0] == "n:m":
            for name, s in self.targets.items():
                magnitude_mask(np.zeros(self.layers[name].weight.shape), s, pattern, name=name)  # checks s
            if schedule is not None:
                raise ValueError(f"Pruner: pattern {pattern!r} fixes the sparsity; it takes no schedule")
        if scope not in ("layer", "global"):
            raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
        if scope == "global" and len(set(self.targets.values())) > 1:
            raise ValueError("scope='global' takes one sparsity for all layers, not a dict")
        if criterion != "magnitude" and not callable(criterion):
            raise ValueError(f"criterion must be 'magnitude' or a callable (model, layer_names) -> "
                             f"{{name: scores}}, got {criterion!r}")
        if schedule is not None and not callable(schedule):
            raise TypeError("schedule must be a callable (step, final) -> sparsity, e.g. make_schedule('agp', ...)")
        self.schedule, self.scope, self.criterion, self.norm = schedule, scope, criterion, norm
        self.masks = {name: np.ones(layer.weight.shape, dtype=bool) for name, layer in self.layers.items()}
        self.current = {name: 0.0 for name in self.layers}
        self.locked = False
        self._channel_params = ({name: channel_params(model, name) for name in self.layers}
                                if self.kind[0] == "channel" else {})

    # ---- building masks ---------------------------------------------------------------------------
    def targets_at(self, step):
        """{name: sparsity} the schedule asks for at `step`."""
        if self.schedule is None:
            return dict(self.targets)
        return {name: float(self.schedule(step, s)) for name, s in self.targets.items()}

    def _scores(self):
        if self.criterion == "magnitude":
            return {name: np.abs(layer.weight.data) for name, layer in self.layers.items()}
        scores = self.criterion(self.model, list(self.layers))
        missing = [n for n in self.layers if n not in scores]
        if missing:
            raise ValueError(f"Pruner: the criterion returned no scores for layers {missing}")
        return scores

    def update_masks(self, sparsities):
        """Recompute the masks for `sparsities` ({name: s}) and apply them. Pruned weights stay pruned."""
        scores = self._scores()
        for name in self.layers:  # once pruned, always pruned: pruned weights score 0, kept ones > 0
            kept = np.maximum(np.abs(np.asarray(scores[name], dtype=np.float64)), np.finfo(np.float64).tiny)
            scores[name] = np.where(self.masks[name], kept, 0.0)
        if self.scope == "global":
            s = next(iter(sparsities.values()))
            weights = {name: layer.weight.data for name, layer in self.layers.items()}
            new = global_masks(weights, s, self.pattern, scores=scores, norm=self.norm)
            new = {name: m & self.masks[name] for name, m in new.items()}
        else:
            new = {name: magnitude_mask(self.layers[name].weight.data,
                                        s if self.kind[0] != "n:m" else None, self.pattern,
                                        scores=scores[name], norm=self.norm,
                                        name=name) & self.masks[name]
                   for name, s in sparsities.items()}
        self.masks.update(new)
        self.current.update(sparsities)
        self.apply()

    def step(self, step):
        """Bring the masks to the schedule's target at `step` (if it changed), then apply them."""
        if not self.locked:
            wanted = self.targets_at(step)
            if any(abs(wanted[n] - self.current[n]) > 1e-12 for n in wanted):
                self.update_masks(wanted)
                return
        self.apply()

    def prune(self, sparsity=None):
        """Prune now, to the final targets (or to `sparsity` for every layer). Returns self."""
        targets = self.targets if sparsity is None else {n: check_sparsity(sparsity, n) for n in self.layers}
        self.update_masks(dict(targets))
        return self

    def lock(self):
        """Freeze the masks: from now on only re-apply them (pattern lock)."""
        self.locked = True
        return self

    @classmethod
    def lock_pattern(cls, model, layers=None, pattern="unstructured"):
        """A locked Pruner keeping the current zeros: "unstructured" locks each zero weight; "channel"
        locks each channel whose weight row, bias and following BatchNorm weight/bias are all 0."""
        if pattern not in ("unstructured", "channel"):
            raise ValueError(f"lock_pattern: pattern must be 'unstructured' or 'channel', got {pattern!r}")
        pruner = cls(model, 0.0, pattern, layers=layers)
        for name, layer in pruner.layers.items():
            if pattern == "unstructured":
                pruner.masks[name] = layer.weight.data != 0
            else:
                alive = np.zeros(layer.weight.shape[0], dtype=bool)
                for module, param_name in pruner._channel_params[name]:
                    data = getattr(module, param_name).data
                    alive |= np.any(data.reshape(data.shape[0], -1) != 0, axis=1)
                pruner.masks[name] = np.broadcast_to(alive.reshape((-1,) + (1,) * (layer.weight.ndim - 1)),
                                                     layer.weight.shape).copy()
            pruner.current[name] = pruner.targets[name] = 1.0 - pruner.masks[name].mean()
        return pruner.lock()

    # ---- applying masks ---------------------------------------------------------------------------
    def _masked_arrays(self):
        """(Parameter, mask) pairs: every weight, and for channel pruning the bias and BatchNorm too."""
        for name, layer in self.layers.items():
            mask = self.masks[name]
            if self.kind[0] != "channel":
                yield layer.weight, mask
                continue
            keep = mask.reshape(mask.shape[0], -1).all(axis=1)
            for module, param_name in self._channel_params[name]:
                param = getattr(module, param_name)
                yield param, (mask if param is layer.weight else keep)

    def apply(self):
        """w <- w * mask (in place, dtype kept)."""
        for param, mask in self._masked_arrays():
            np.copyto(param.data, 0, where=~mask)

    def mask_gradients(self):
        for param, mask in self._masked_arrays():
            if param.grad is not None:
                param.grad = np.where(mask, param.grad, 0).astype(param.grad.dtype, copy=False)

    # ---- training callbacks -----------------------------------------------------------------------
    def on_train_begin(self, state):
        self.step(state.step)

    def on_step_begin(self, state):
        self.step(state.step)

    def on_after_backward(self, state):
        self.mask_gradients()

    def on_step_end(self, state):
        self.apply()

    # ---- reporting --------------------------------------------------------------------------------
    def report(self):
        """Rows {layer, type, shape, params, zeros, sparsity, target} per layer, then an "overall" row."""
        return sparsity_report(self.model, list(self.layers), targets=self.current)

    def format_report(self):
        return format_sparsity_report(self.report())


def sparsity_report(model, layers=None, targets=None):
    """Measured zeros in each Linear/Conv2d weight (whatever made them), and overall."""
    rows, total, zeros = [], 0, 0
    for name, layer in prunable_layers(model, layers).items():
        w = layer.weight.data
        z = int(w.size - np.count_nonzero(w))
        rows.append(dict(layer=name, type=type(layer).__name__, shape=tuple(w.shape), params=int(w.size),
                         zeros=z, sparsity=z / w.size, target=(targets or {}).get(name)))
        total, zeros = total + w.size, zeros + z
    rows.append(dict(layer="overall", type="", shape=(), params=int(total), zeros=int(zeros),
                     sparsity=zeros / total if total else 0.0, target=None))
    return rows


def format_sparsity_report(rows):
    lines = [f"{'layer':<14}{'type':<10}{'shape':<18}{'params':>9}{'zeros':>9}{'sparsity':>10}"]
    for r in rows:
        lines.append(f"{r['layer']:<14}{r['type']:<10}{str(r['shape']) if r['shape'] else '':<18}"
                     f"{r['params']:>9}{r['zeros']:>9}{r['sparsity']:>10.1%}")
    return "\n".join(lines)
