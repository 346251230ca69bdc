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


def _isa_paths():
    """Every instruction-set path of the compiled kernels that this CPU runs (csrc/kernels.h);
    one placeholder when the extension is not built (its tests then skip themselves)."""
    try:
        from minitransformer import _ext
    except ImportError:
        return ["unbuilt"]
    return list(_ext.isa_paths()) or ["unbuilt"]


@pytest.fixture(scope="module", params=_isa_paths())
def isa_path(request):
    """Run a module's tests on every instruction-set path this CPU supports (baseline,
    avx2, avx512, neon), the compiled kernels switched to it for the module's duration.

    A module asks for it with `pytestmark = pytest.mark.usefixtures("isa_path")`. No path
    is skipped: a path the CPU cannot run is not listed, and every CPU runs the baseline."""
    if request.param == "unbuilt":
        yield request.param
        return
    from minitransformer import _ext

    chosen = _ext.isa_used()
    _ext.use_isa(request.param)
    try:
        yield request.param
    finally:
        _ext.use_isa(chosen)
