"""Fixtures shared by the tests (helpers that are plain functions live in helpers.py)."""

import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
