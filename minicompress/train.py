"""Training and evaluation loops with callbacks: the one loop every compression method hooks into.

    history = fit(model, (X_train, y_train), val_data=(X_test, y_test))   # the model's own recipe
    accuracy = evaluate(model, (X_test, y_test))                          # in [0, 1]

One step of `fit`, with the callback hooks (any object with some of these methods) where they run:

    on_train_begin(state)
      for each epoch:   on_epoch_begin(state)
        for each batch: optimizer.zero_grad()
                        on_step_begin(state)       state.x, state.y hold the batch
                        logits = model(x); loss = loss_fn(logits, y)
                        on_loss(state)             may replace state.loss (regulariser, distillation term)
                        [non-finite loss -> NonFiniteLossError; the step is not taken]
                        loss.backward()
                        on_after_backward(state)   gradients exist (clip, mask or inspect them here)
                        optimizer.step()
                        on_step_end(state)         weights updated (re-apply pruning masks here)
        scheduler.step(); validation;  on_epoch_end(state)
    on_train_end(state)

`state` (a TrainState) has model, optimizer, scheduler, epoch, step (global), x, y, logits, loss,
history and stop_training (set it to True to stop after the current step).

Defaults come from a `Recipe` (epochs, lr, batch size, optimiser, weight decay, cosine schedule):
`fit` uses `model.recipe` when the model has one (the zoo models in `models.py` carry theirs as a class
attribute) and `Recipe()` otherwise. Any argument given to `fit` overrides the recipe's value.
"""
import math
import time
from dataclasses import dataclass

import numpy as np

from .core import Tensor, no_grad
from .data import batches
from .nn import functional as F
from .optim import AdamW, CosineAnnealingLR

HOOKS = ("on_train_begin", "on_epoch_begin", "on_step_begin", "on_loss", "on_after_backward", "on_step_end",
         "on_epoch_end", "on_train_end")


@dataclass(frozen=True)
class Recipe:
    """How to train a model from scratch: `optimizer(params, lr, weight_decay)` (AdamW by default),
    cosine-annealed to 0 over `epochs` (stepped per epoch), cross-entropy with `label_smoothing`."""

    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 1e-2
    label_smoothing: float = 0.0
    optimizer: type = AdamW
    cosine: bool = True

    def make_optimizer(self, params):
        return self.optimizer(params, lr=self.lr, weight_decay=self.weight_decay)

    def loss_fn(self, logits, targets):
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)


def default_recipe(model):
    """The model's own `recipe` attribute if it has one, else `Recipe()`."""
    recipe = getattr(model, "recipe", None)
    return recipe if isinstance(recipe, Recipe) else Recipe()


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite; raised before backward, so the model keeps its previous weights."""


class History:
    """Per-epoch records of a `fit` run: loss (mean over the epoch's batches), acc (train accuracy of the
    batches as they were seen, in train mode), val_acc (None without val_data), lr, time (seconds)."""

    def __init__(self):
        self.epoch, self.loss, self.acc, self.val_acc, self.lr, self.time = [], [], [], [], [], []

    def record(self, epoch, loss, acc, val_acc, lr, seconds):
        for name, value in zip(("epoch", "loss", "acc", "val_acc", "lr", "time"),
                               (epoch, loss, acc, val_acc, lr, seconds)):
            getattr(self, name).append(value)

    def as_dict(self):
        return {k: list(getattr(self, k)) for k in ("epoch", "loss", "acc", "val_acc", "lr", "time")}

    def __len__(self):
        return len(self.epoch)

    def __repr__(self):
        if not self.epoch:
            return "History(no epochs)"
        last = f"loss={self.loss[-1]:.4f}"
        if self.val_acc[-1] is not None:
            last += f", val_acc={self.val_acc[-1]:.4f}"
        return f"History({len(self)} epochs, last: {last})"


class TrainState:
    """What the callbacks see and may change (see the module docstring)."""

    def __init__(self, model, optimizer, scheduler, history):
        self.model, self.optimizer, self.scheduler, self.history = model, optimizer, scheduler, history
        self.epoch = self.step = 0
        self.x = self.y = self.logits = self.loss = None
        self.stop_training = False


def fit(model, train_data, epochs=None, optimizer=None, *, batch_size=None, loss_fn=None, callbacks=(),
        val_data=None, verbose=True, scheduler=None, recipe=None):
    """Train `model` on `train_data` = (X, y); returns a History. See the module docstring.

    epochs, batch_size: default to the recipe's.  optimizer: default `recipe.make_optimizer(...)` with a
    cosine schedule over the epochs (unless `scheduler` is given); a given optimizer gets no schedule
    unless `scheduler` is passed too (stepped once per epoch).  loss_fn(logits, y) -> scalar Tensor,
    default cross_entropy (with the recipe's label smoothing).  Every module's train/eval mode is restored
    when fit returns; validation does not undo modes that callbacks set during training.
    """
    recipe = default_recipe(model) if recipe is None else recipe
    epochs = recipe.epochs if epochs is None else epochs
    batch_size = recipe.batch_size if batch_size is None else batch_size
    _check_positive_int("epochs", epochs)
    _check_positive_int("batch_size", batch_size)
    X, y = _check_data("train_data", train_data)
    if val_data is not None:
        _check_data("val_data", val_data)
    callbacks = _check_callbacks(callbacks)
    if optimizer is None:
        optimizer = recipe.make_optimizer(model.parameters())
        if scheduler is None and recipe.cosine:
            scheduler = CosineAnnealingLR(optimizer, T_max=epochs)
    loss_fn = recipe.loss_fn if loss_fn is None else loss_fn
    hooks = {name: [getattr(cb, name) for cb in callbacks if hasattr(cb, name)] for name in HOOKS}

    history = History()
    state = TrainState(model, optimizer, scheduler, history)
    modes = _training_modes(model)
    buffer_owners = [m for m in model.modules() if m._buffers]
    model.train()
    try:
        _call(hooks["on_train_begin"], state)
        for epoch in range(epochs):
            state.epoch = epoch
            _call(hooks["on_epoch_begin"], state)
            started, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
            loss_sum, n_seen, n_correct, n_labelled = 0.0, 0, 0, 0
            for x, yb in batches(X, y, batch_size=batch_size, shuffle=True):
                state.x, state.y = x, yb
                optimizer.zero_grad()
                _call(hooks["on_step_begin"], state)
                saved_buffers = _snapshot_buffers(buffer_owners)  # BatchNorm's forward updates them
                state.logits = model(state.x)
                state.loss = loss_fn(state.logits, state.y)
                _call(hooks["on_loss"], state)
                loss_value = _check_loss(state, saved_buffers)
                state.loss.backward()
                _call(hooks["on_after_backward"], state)
                optimizer.step()
                _call(hooks["on_step_end"], state)
                state.step += 1
                n = len(state.y)
                loss_sum += loss_value * n
                n_seen += n
                correct = _count_correct(state.logits, state.y)
                if correct is not None:
                    n_correct += correct
                    n_labelled += n
                if state.stop_training:
                    break
            if scheduler is not None:
                scheduler.step()
            acc = n_correct / n_labelled if n_labelled else None
            val_acc = evaluate(model, val_data) if val_data is not None else None
            history.record(epoch, loss_sum / max(n_seen, 1), acc, val_acc, lr, time.perf_counter() - started)
            if verbose:
                print(_progress_line(history, epochs), flush=True)
            _call(hooks["on_epoch_end"], state)
            if state.stop_training:
                break
        _call(hooks["on_train_end"], state)
    finally:
        _restore_modes(modes)
    return history


def evaluate(model, data, batch_size=512):
    """Accuracy of argmax(model(X)) against y, in [0, 1]: eval mode, no_grad, the model's mode restored."""
    X, y = _check_data("data", data)
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise ValueError(f"evaluate: y must be a 1-D array of integer class labels, got dtype {y.dtype} "
                         f"and shape {y.shape}")
    _check_positive_int("batch_size", batch_size)
    modes = _training_modes(model)
    model.eval()
    correct = 0
    try:
        with no_grad():
            for x, yb in batches(X, y, batch_size=batch_size, shuffle=False):
                logits = model(x)
                if logits.ndim != 2 or len(logits) != len(yb):
                    raise ValueError(f"evaluate: the model returned shape {tuple(logits.shape)} for a batch of "
                                     f"{len(yb)} rows; expected logits of shape ({len(yb)}, n_classes)")
                correct += int((logits.data.argmax(axis=1) == yb).sum())
    finally:
        _restore_modes(modes)
    return correct / len(y)


# ---- small helpers --------------------------------------------------------------------------------
def _training_modes(model):
    """Each module's own train/eval flag (a callback may have frozen some BatchNorms in eval mode)."""
    return [(m, m.training) for m in model.modules()]


def _restore_modes(modes):
    for module, training in modes:
        object.__setattr__(module, "training", training)


def _call(functions, state):
    for fn in functions:
        fn(state)


def _snapshot_buffers(modules):
    return [(m, {k: (None if b is None else np.array(b, copy=True)) for k, b in m._buffers.items()})
            for m in modules]


def _check_loss(state, saved_buffers):
    """The loss as a float; on NaN/inf restore the buffers the forward changed and raise."""
    loss = state.loss
    if not isinstance(loss, Tensor) or loss.data.size != 1:
        shape = getattr(loss, "shape", None)
        raise ValueError(f"fit: loss_fn (and on_loss callbacks) must give a scalar Tensor, got "
                         f"{type(loss).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else ""))
    value = float(loss.data)
    if not math.isfinite(value):
        for module, buffers in saved_buffers:
            module._buffers.update(buffers)
        raise NonFiniteLossError(
            f"fit: the loss is {value} at epoch {state.epoch}, step {state.step} (0-based); no gradient step "
            "was taken, the model's weights and buffers are as they were before this step. Try a lower "
            "learning rate, or check the inputs for NaN/inf.")
    return value


def _count_correct(logits, y):
    """Correct argmax predictions, or None when (logits, y) is not a classification batch."""
    if not isinstance(logits, Tensor) or logits.ndim != 2 or y.ndim != 1 or len(y) != len(logits) \
            or not np.issubdtype(y.dtype, np.integer):
        return None
    return int((logits.data.argmax(axis=1) == y).sum())


def _progress_line(history, epochs):
    width = len(str(epochs))
    line = f"epoch {history.epoch[-1] + 1:>{width}}/{epochs}  loss {history.loss[-1]:.4f}"
    if history.acc[-1] is not None:
        line += f"  train acc {100 * history.acc[-1]:5.1f}%"
    if history.val_acc[-1] is not None:
        line += f"  val acc {100 * history.val_acc[-1]:5.1f}%"
    return line + f"  lr {history.lr[-1]:.2e}  {history.time[-1]:.2f}s"


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_data(name, data):
    """(X, y) with as many rows as labels; X an array or Tensor, y an array."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name} must be a pair (X, y), got {type(data).__name__}"
                        + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else ""))
    X, y = data
    X = X.data if isinstance(X, Tensor) else np.asarray(X)
    y = y.data if isinstance(y, Tensor) else np.asarray(y)
    if X.ndim < 1 or y.ndim < 1 or len(X) != len(y) or len(X) == 0:
        raise ValueError(f"{name}: X of shape {X.shape} and y of shape {y.shape} must have the same, "
                         "non-zero number of rows")
    return X, y


def _check_callbacks(callbacks):
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        callbacks = [callbacks]
    for i, cb in enumerate(callbacks):
        if not any(callable(getattr(cb, name, None)) for name in HOOKS):
            raise TypeError(f"fit: callbacks[{i}] ({type(cb).__name__}) has none of the hook methods "
                            f"{', '.join(HOOKS)}")
    return list(callbacks)
