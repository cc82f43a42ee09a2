"""Shared pytest set-up: hypothesis profiles ("ci" has no deadline: Numba compiles on first call)."""
import os

# One BLAS thread in tests: the tiny GEMMs of the test models gain nothing from threads, and two test
# processes (or a busy machine) oversubscribing 2 cores make OpenBLAS spin for 10-100x longer. Must be set
# before NumPy is imported; benchmarks/ run with the default threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

matplotlib.use("Agg")

settings.register_profile("ci", deadline=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", deadline=None, max_examples=15,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# ---- zoo models trained once (foundation, H2) -----------------------------------------------------
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    """The canonical split (X_train, y_train, X_test, y_test) of mc.data.digits_split(); do not modify it."""
    import minicompress as mc
    return mc.data.digits_split()


@pytest.fixture(scope="session")
def pretrained_model():
    """`pretrained_model(name, seed=0)` -> a fresh copy (eval mode) of zoo model `name` trained with fit's
    defaults on the canonical split. Backed by `mc.models.pretrained`, whose disk cache is keyed by a hash
    of the library's source: the weights always come from this very code, trained at most once."""
    import minicompress as mc

    def get(name, seed=0):
        return mc.models.pretrained(name, seed=seed)
    return get


@pytest.fixture(scope="session")
def digit_images():
    """All 1797 digit images (N, 64) float32 of mc.data.load_digits(), no labels; do not modify them."""
    import minicompress as mc
    return mc.data.load_digits()[0]
