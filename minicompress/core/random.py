"""One seeded random generator for the whole library.

Every random draw minicompress makes (initialisation, dropout, shuffling, random search) goes through
`rng()`, so `manual_seed(s)` makes a whole run repeatable bit for bit, as `torch.manual_seed` does.

    >>> import minicompress as mc
    >>> mc.manual_seed(0); a = mc.core.random.rng().random()
    >>> mc.manual_seed(0); a == mc.core.random.rng().random()
    True
"""
import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reset the library's generator to `np.random.default_rng(seed)` (PCG64). Returns the generator."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"manual_seed: seed must be >= 0, got {seed}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def rng():
    """The generator every random draw of the library uses."""
    return _generator
