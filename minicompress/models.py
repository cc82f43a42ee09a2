"""The model zoo of the tutorials: three small digit classifiers, and `pretrained` weights cached on disk.

Every zoo model takes rows of `mc.data.load_digits()` as they come, x of shape (N, 64), and returns
logits of shape (N, 10). Each class carries the `recipe` (a `train.Recipe`) with which `fit` trains it
from scratch when called with its defaults.

    mlp()               64-128-64-10 with ReLU (Sequential: state_dict keys 0.*, 2.*, 4.*)
    cnn()               (N, 64) -> Unflatten -> (N, 1, 8, 8) -> [conv3x3(pad 1) -> BN -> ReLU] x 2 (16, 32
                        channels) -> MaxPool 2x2 -> Flatten (N, 512) -> Linear -> (N, 10)
    tiny_transformer()  each image row is a token (8 tokens x 8 features), a CLS token, learned positions,
                        2 encoder layers, d=32, 4 heads, classifier on CLS   (written by the lead)

    pretrained(name, seed=0): `mc.manual_seed(seed)`, build, `fit` with the recipe on the canonical split
    (`mc.data.digits_split()`), cache the state_dict in $MINICOMPRESS_CACHE (default ~/.cache/minicompress)
    as `{name}-seed{seed}-{source hash}.npz`. The hash covers the source of everything that decides the
    trained weights (core, kernels, nn, optim, data, models, train), so weights from older code never load.
    Later calls load the file; each call returns a fresh model in eval mode. The library's random
    generator is left exactly as it was, whether the model was trained or loaded.
"""
import functools
import hashlib
import os
import tempfile
import warnings

import numpy as np

from . import nn
from .core import Tensor, concat, manual_seed, rng
from .data import digits_split
from .nn.module import load_arrays
from .train import Recipe, fit

N_FEATURES, N_CLASSES = 64, 10


class MLP(nn.Sequential):
    """64-128-64-10 multilayer perceptron with ReLU."""

    recipe = Recipe(epochs=40, lr=1e-2, batch_size=64, weight_decay=0.1, label_smoothing=0.1)

    def __init__(self, hidden=(128, 64)):
        sizes = (N_FEATURES,) + tuple(hidden)
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        super().__init__(*layers, nn.Linear(sizes[-1], N_CLASSES))


class CNN(nn.Sequential):
    """Two conv3x3-BatchNorm-ReLU blocks, a 2x2 max-pool and a linear classifier, on 8x8 images."""

    recipe = Recipe(epochs=25, lr=1e-2, batch_size=128, weight_decay=0.1, label_smoothing=0.1)

    def __init__(self, channels=(16, 32)):
        c1, c2 = channels
        super().__init__(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * 4 * 4, N_CLASSES),
        )


def mlp():
    return MLP()


def cnn():
    return CNN()


class TinyTransformer(nn.Module):
    """A ViT-style encoder on digits: each image row is a token (Dosovitskiy et al., 2021, on 8x8 images).

        x (N, 64) -> rows (N, 8, 8) -> embed Linear(8, d) -> prepend CLS -> + positions (9, d)
          -> num_layers x TransformerEncoderLayer(d, nhead, pre-norm, GELU) -> LayerNorm -> CLS -> Linear(d, 10)
    """

    recipe = Recipe(epochs=60, lr=3e-3, batch_size=64, weight_decay=0.05, label_smoothing=0.1)

    def __init__(self, d_model=32, nhead=4, num_layers=2, dim_feedforward=64, dropout=0.1):
        super().__init__()
        self.n_tokens, self.token_dim, self.d_model = 8, 8, d_model
        self.embed = nn.Linear(self.token_dim, d_model)
        self.cls_token = nn.Parameter(np.zeros((1, 1, d_model), dtype=np.float32))
        self.pos_embedding = nn.Parameter(np.zeros((1, self.n_tokens + 1, d_model), dtype=np.float32))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.pos_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, N_CLASSES)

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f"TinyTransformer: input has shape {tuple(x.shape)}, expected (N, {N_FEATURES})")
        n = x.shape[0]
        tokens = self.embed(x.reshape(n, self.n_tokens, self.token_dim))             # (N, 8, d)
        cls = self.cls_token + Tensor(np.zeros((n, 1, self.d_model), dtype=tokens.dtype))  # (N, 1, d)
        h = concat([cls, tokens], axis=1) + self.pos_embedding                         # (N, 9, d)
        h = self.norm(self.encoder(h))
        return self.head(h[:, 0])                                                     # (N, 10)


def tiny_transformer(**kwargs):
    return TinyTransformer(**kwargs)


ZOO = {"mlp": mlp, "cnn": cnn, "tiny_transformer": tiny_transformer}

# What decides the trained weights: a change in any of these files changes the cache key.
SOURCE_PARTS = ("core", "kernels", "nn", "optim.py", "data", "models.py", "train.py")
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=4)
def source_hash(package_dir=PACKAGE_DIR):
    """sha256 (first 16 hex digits) over the relative paths and bytes of the SOURCE_PARTS files."""
    digest = hashlib.sha256()
    for part in SOURCE_PARTS:
        path = os.path.join(package_dir, part)
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(root, f) for root, dirs, names in os.walk(path) for f in names
            if f.endswith((".py", ".csv.gz")) and "__pycache__" not in root)
        for file in sorted(files):
            digest.update(os.path.relpath(file, package_dir).replace(os.sep, "/").encode())
            with open(file, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()[:16]


def cache_dir():
    return os.environ.get("MINICOMPRESS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "minicompress")


def cache_path(name, seed=0):
    return os.path.join(cache_dir(), f"{name}-seed{seed}-{source_hash()}.npz")


def pretrained(name, seed=0):
    """A zoo model trained with its recipe on the canonical split (cached on disk), in eval mode."""
    if name not in ZOO:
        raise ValueError(f"pretrained: unknown model name {name!r}; expected one of {sorted(ZOO)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"pretrained: seed must be an int >= 0, got {seed!r}")
    saved_rng_state = rng().bit_generator.state
    try:
        model = _load_cached(name, seed)
        if model is None:
            model = _train_and_cache(name, seed)
    finally:
        rng().bit_generator.state = saved_rng_state
    return model.eval()


def _load_cached(name, seed):
    path = cache_path(name, seed)
    if not os.path.exists(path):
        return None
    model = ZOO[name]()
    try:
        model.load_state_dict(load_arrays(path))
    except ValueError as exc:  # a truncated or foreign file: retrain and overwrite it
        warnings.warn(f"pretrained: ignoring the unreadable cache file {path} ({exc})")
        return None
    return model


def _train_and_cache(name, seed):
    manual_seed(int(seed))
    model = ZOO[name]()
    X_train, y_train, _, _ = digits_split()
    fit(model, (X_train, y_train), verbose=False)
    path = cache_path(name, seed)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{name}-", suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **model.state_dict())
            os.replace(tmp, path)  # atomic: a reader sees the old file or the whole new one
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError as exc:
        warnings.warn(f"pretrained: could not write the cache file {path} ({exc}); the model is trained "
                      "but not cached")
    return model
