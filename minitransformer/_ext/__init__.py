"""Compiled modules built from csrc/: every csrc/<name>.pyx becomes minitransformer._ext.<name>.

They are built by ``make setup`` (or ``pip install -e .``, or
``python setup.py build_ext --inplace``), which needs a C compiler. The model does not
import them directly: minitransformer/backends/cython_backend.py wraps them, and says
what to do when they are not built.

    attention   the attention core: fused forward and backward, plain and blocked
    ops         fused cross-entropy (loss and gradient in one pass) and LayerNorm

and csrc/simd_rows.pxd, the SIMD row kernels both share (cimported at build time).

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


_load_with_sleeping_openmp_threads("attention")
