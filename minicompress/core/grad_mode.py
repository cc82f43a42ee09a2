"""Switching gradient recording on and off (`no_grad`), as `torch.no_grad` does.

Inside `no_grad()` no op records its inputs, so nothing can be back-propagated and no memory is held
for a backward pass: the mode for evaluation and for in-place weight updates.
"""
import contextlib

_enabled = True


def is_grad_enabled():
    return _enabled


@contextlib.contextmanager
def _set_grad_enabled(mode):
    global _enabled
    previous, _enabled = _enabled, mode
    try:
        yield
    finally:
        _enabled = previous


def no_grad():
    """Context manager (and decorator) under which ops do not record a graph."""
    return _set_grad_enabled(False)


def enable_grad():
    """Context manager that turns recording back on inside a `no_grad` block."""
    return _set_grad_enabled(True)
