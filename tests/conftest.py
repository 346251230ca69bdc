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


@pytest.fixture(scope="module", params=["tiled", "blas"])
def kernel_products(request):
    """Run a module's tests with the Cython kernels' tiled products, then with BLAS.

    A module asks for it with `pytestmark = pytest.mark.usefixtures("kernel_products")`.
    The tiled run skips, saying why, on a CPU without AVX-512; without the extension
    built, the tests skip themselves."""
    from minitransformer.backends import cython_backend

    if cython_backend.unavailable_reason() is not None:
        yield request.param
        return
    from minitransformer._ext import attention as kernels

    if request.param == "tiled" and not kernels.tiled_products_available():
        pytest.skip("the tiled products need a CPU with AVX-512; this one has none")
    chosen = kernels.tiled_products_used()
    kernels.use_tiled_products(request.param == "tiled")
    try:
        yield request.param
    finally:
        kernels.use_tiled_products(chosen)
