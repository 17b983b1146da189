import os
import sys
from pathlib import Path

import numpy as np
import pytest

# small GEMMs are far slower with threaded BLAS on 2-core machines under load
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_table(name):
    """Load a PMLB table from ../shared/data (skip the test when it is absent)."""
    if not (DATA_DIR / "load.py").exists():
        pytest.skip("../shared/data is not available")
    if str(DATA_DIR) not in sys.path:
        sys.path.insert(0, str(DATA_DIR))
    from load import load

    return load(name)


def standardize(X):
    X = np.asarray(X, dtype=float)
    s = X.std(axis=0)
    s[s == 0] = 1.0
    return (X - X.mean(axis=0)) / s


@pytest.fixture
def table():
    return load_table
