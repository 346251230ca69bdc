"""Compiled modules built from csrc/: every csrc/<name>.pyx becomes minitransformer._ext.<name>.

They are built by ``make setup`` (or ``pip install -e .``, or
``python setup.py build_ext --inplace``), which needs a C compiler. The model does not
import them directly: minitransformer/backends/cython_backend.py wraps them, and says
what to do when they are not built.

    attention   the attention core: fused forward and backward, plain and blocked
    ops         fused cross-entropy (loss and gradient in one pass), LayerNorm, dropout
    banded      local attention over the band |t − s| ≤ w only, forward and backward

and csrc/kernels.pxd, the C both share (cimported at build time): one portable
micro-kernel for the matrix products and the SIMD row kernels, compiled for every
instruction-set path (csrc/kernels.h).

The path. Each module picks the best path its CPU runs when it loads. This file keeps
them on one path: the one MINITRANSFORMER_ISA names (baseline, avx2, avx512 or neon), if
set, and use_isa(name) switches both at once (for tests and benchmarks). A path that
cannot run here is an error that says which ones can (isa_error, for the backend).

One setting is made here, before the first of them loads: idle OpenMP threads sleep
(OMP_WAIT_POLICY=PASSIVE) instead of spinning. The kernels run between NumPy calls, whose
BLAS has threads of its own; threads that spin after a kernel, waiting for the next one,
take the cores from those. Measured on 2 busy cores, the attention forward and backward
at B=64, H=4, T=S=32 took 36 ms with spinning threads and 5 ms with sleeping ones. The
variable is read by the OpenMP runtime when it loads, so it is set only for that moment,
and a value the user chose is left alone. (Should another module have loaded the same
runtime earlier, its setting stays.)
"""

import importlib
import os


def _load_with_sleeping_openmp_threads(name):
    """Import minitransformer._ext.<name> with OMP_WAIT_POLICY=PASSIVE unless set; None if not built."""
    chosen_by_user = "OMP_WAIT_POLICY" in os.environ
    if not chosen_by_user:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError:
        return None
    finally:
        if not chosen_by_user:
            del os.environ["OMP_WAIT_POLICY"]


ISA_ENV_VAR = "MINITRANSFORMER_ISA"

attention = _load_with_sleeping_openmp_threads("attention")
ops = _load_with_sleeping_openmp_threads("ops")
banded = _load_with_sleeping_openmp_threads("banded")


def isa_paths():
    """The instruction-set paths this build has and this CPU runs, the best last."""
    return attention._isa_supported() if attention is not None else ()


def isa_used():
    """The path the kernels use now, e.g. 'avx2'; None when the kernels are not built."""
    return attention._isa_active()[0] if attention is not None else None


def isa_tile():
    """The float32 tile of C the micro-kernel keeps in registers on this path: (rows, columns)."""
    return attention._isa_active()[1:]


def use_isa(name):
    """Run every compiled kernel on path `name` from now on (one of isa_paths())."""
    if name not in isa_paths():
        raise ValueError(
            f"{ISA_ENV_VAR}={name!r} cannot run here; this CPU and build run {', '.join(isa_paths())}"
        )
    attention._isa_select(name)
    if ops is not None and not ops._isa_select(attention.ISA_NAMES.index(name)):
        raise RuntimeError(f"the ops module could not switch to {name!r}")  # both read one CPU
    if banded is not None and not banded._isa_select(attention.ISA_NAMES.index(name)):
        raise RuntimeError(f"the banded module could not switch to {name!r}")


def _isa_from_environment():
    """Apply MINITRANSFORMER_ISA if set; the error message if it names a path that cannot run."""
    name = os.environ.get(ISA_ENV_VAR, "").strip().lower()
    if not name or attention is None:
        return None
    try:
        use_isa(name)
    except ValueError as error:
        return str(error)
    return None


isa_error = _isa_from_environment()
