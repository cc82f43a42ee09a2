"""Optimisers and learning-rate schedules, with PyTorch's update equations, names and defaults.

Each step reads `p.grad` and updates `p.data` in place (the array keeps its identity, so masks, views
and observers that hold it stay valid). g_t is the gradient, θ the parameter, γ the learning rate.

    SGD   (torch.optim.SGD; Sutskever et al., 2013 for Nesterov)
        g ← g + λ θ                                         (weight_decay λ, L2 through the gradient)
        b ← g                      at the first step,  else  b ← μ b + (1 - τ) g   (momentum μ, dampening τ)
        g ← g + μ b  if nesterov,  else  g ← b
        θ ← θ - γ g
    Adam  (torch.optim.Adam; Kingma & Ba, ICLR 2015)
        g ← g + λ θ                                         (L2 added to the gradient)
        m ← β1 m + (1 - β1) g,   v ← β2 v + (1 - β2) g²
        m̂ = m / (1 - β1^t),     v̂ = v / (1 - β2^t)
        (amsgrad: v_max ← max(v_max, v), v̂ = v_max / (1 - β2^t); Reddi et al., ICLR 2018)
        θ ← θ - γ m̂ / (√v̂ + ε)
    AdamW (torch.optim.AdamW; Loshchilov & Hutter, ICLR 2019): decoupled weight decay
        θ ← θ (1 - γ λ), then the Adam step without the L2 term.

Schedules change `group["lr"]` once per `scheduler.step()` (call it once per epoch, after the
optimiser's steps, as in PyTorch). With e = last_epoch and η0 a group's initial lr:
    StepLR              η_e = η0 γ^⌊e / step_size⌋
    CosineAnnealingLR   η_e = η_min + (η0 - η_min) (1 + cos(π e / T_max)) / 2   (Loshchilov & Hutter, 2017)
"""
import math

import numpy as np

from .core import Tensor, enable_grad


class Optimizer:
    """Base class: holds `param_groups` (list of dicts, each with "params" and hyperparameters) and
    per-parameter `state` (dict keyed by the parameter tensor), as torch.optim.Optimizer."""

    def __init__(self, params, defaults):
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Tensors or of dicts, "
                            "got a single Tensor (wrap it in a list)")
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{type(self).__name__}: a parameter group must be a dict with a 'params' key")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: params[{i}] is a {type(p).__name__}, not a Tensor")
            if not p.requires_grad:
                raise ValueError(f"{type(self).__name__}: params[{i}] (shape {p.shape}) does not require grad")
            if id(p) in seen:
                raise ValueError(f"{type(self).__name__}: params[{i}] (shape {p.shape}) appears in more "
                                 "than one parameter group")
            seen.add(id(p))
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown hyperparameter(s) {sorted(unknown)}; "
                            f"expected some of {sorted(self.defaults)}")
        full = {**self.defaults, **group, "params": params}
        self._check_hyperparameters(full)
        self.param_groups.append(full)

    def _check_hyperparameters(self, group):
        """Overridden by each optimiser: ValueError naming the bad argument."""

    def zero_grad(self, set_to_none=True):
        """Forget the gradients (None, as PyTorch's default), or fill them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad[...] = 0

    def step(self, closure=None):
        """One update of every parameter that has a gradient. `closure` (re-evaluates and returns the
        loss, after calling backward) is called first with gradients enabled, as in PyTorch."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if p.grad.shape != p.data.shape:
                        raise ValueError(f"{type(self).__name__}.step: a gradient of shape {p.grad.shape} "
                                         f"for a parameter of shape {p.data.shape}")
                    self._update(p, p.grad, group, self.state.setdefault(p, {}))
        return loss

    def _update(self, p, grad, group, state):
        raise NotImplementedError

    # ---- saving and restoring (PyTorch's layout: parameters are numbered in group order) ----------
    def state_dict(self):
        index = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index[p] = len(index)
                ids.append(index[p])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[p]: {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
                            for k, v in s.items()}
                 for p, s in self.state.items() if p in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and per-parameter state; checks group and parameter counts and the
        state's shapes first, so that a failed load leaves the optimiser unchanged."""
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if groups is None or "state" not in state_dict:
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected a dict with 'state' and "
                             "'param_groups' (as returned by state_dict())")
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: {len(groups)} parameter groups in the "
                             f"state dict, {len(self.param_groups)} in the optimiser")
        params = []
        for i, (saved, mine) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(mine["params"]):
                raise ValueError(f"{type(self).__name__}.load_state_dict: group {i} has {len(saved['params'])} "
                                 f"parameters in the state dict, {len(mine['params'])} in the optimiser")
            params.extend(zip(saved["params"], mine["params"]))
        by_index = dict(params)
        new_state = {}
        for idx, s in state_dict["state"].items():
            if idx not in by_index:
                raise ValueError(f"{type(self).__name__}.load_state_dict: state for parameter {idx}, "
                                 "which no group lists")
            p = by_index[idx]
            for k, v in s.items():
                if isinstance(v, np.ndarray) and v.shape != p.shape:
                    raise ValueError(f"{type(self).__name__}.load_state_dict: state '{k}' of parameter {idx} "
                                     f"has shape {v.shape}, the parameter {p.shape}")
            new_state[p] = {k: (np.array(v, dtype=p.data.dtype, copy=True) if isinstance(v, np.ndarray) else v)
                            for k, v in s.items()}
        for saved, mine in zip(groups, self.param_groups):
            mine.update({k: v for k, v in saved.items() if k != "params"})
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])


def _check_non_negative(name, value, owner):
    if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")


def _check_betas(betas, owner):
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2
            and all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)):
        raise ValueError(f"{owner}: betas must be a pair of numbers in [0, 1), got {betas!r}")


class SGD(Optimizer):
    """SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False) -- see the module doc."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check_hyperparameters(self, group):
        for name in ("lr", "momentum", "dampening", "weight_decay"):
            _check_non_negative(name, group[name], "SGD")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov=True requires momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _update(self, p, grad, group, state):
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd != 0:
            grad = grad + wd * p.data
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(grad, dtype=p.data.dtype, copy=True)
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        p.data -= lr * grad


class Adam(Optimizer):
    """Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False): L2 through the
    gradient, as torch.optim.Adam (use AdamW for decoupled decay)."""

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas,
                                      eps=eps, weight_decay=weight_decay, amsgrad=amsgrad))

    def _check_hyperparameters(self, group):
        owner = type(self).__name__
        for name in ("lr", "eps", "weight_decay"):
            _check_non_negative(name, group[name], owner)
        _check_betas(group["betas"], owner)

    def _update(self, p, grad, group, state):
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if wd != 0:
            if self.decoupled:
                p.data *= 1 - lr * wd
            else:
                grad = grad + wd * p.data
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * (grad * grad)
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        denom = np.sqrt(v)
        denom /= math.sqrt(1 - beta2 ** t)
        denom += eps
        step_size = lr / (1 - beta1 ** t)
        p.data -= step_size * (m / denom)


class AdamW(Adam):
    """AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False): decoupled decay."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


# ---- learning-rate schedules ----------------------------------------------------------------------
class LRScheduler:
    """Base of the schedules: `step()` advances `last_epoch` and sets each group's lr to `lr_at(epoch)`.
    Construction records each group's `initial_lr` and applies epoch 0, as PyTorch."""

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def lr_at(self, base_lr, epoch):
        raise NotImplementedError

    def step(self):
        self.last_epoch += 1
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(base, self.last_epoch)

    def get_last_lr(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)


class StepLR(LRScheduler):
    """StepLR(optimizer, step_size, gamma=0.1): lr = initial_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if isinstance(step_size, bool) or not isinstance(step_size, (int, np.integer)) or step_size <= 0:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        _check_non_negative("gamma", gamma, "StepLR")
        self.step_size, self.gamma = int(step_size), gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """CosineAnnealingLR(optimizer, T_max, eta_min=0): lr = eta_min + (initial_lr - eta_min)(1 + cos(pi e/T_max))/2."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        if isinstance(T_max, bool) or not isinstance(T_max, (int, np.integer)) or T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        _check_non_negative("eta_min", eta_min, "CosineAnnealingLR")
        self.T_max, self.eta_min = int(T_max), eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch):
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
