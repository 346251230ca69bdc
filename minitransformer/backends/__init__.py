"""One dispatch: ``get(name)`` returns a backend's kernels object.

The kernels object (minitransformer/backends/kernels.py) names every operation a backend
may provide (the attention core, its blocked form, LayerNorm, cross-entropy, dropout), the
NumPy reference implementing them all; a backend overrides what it has compiled. It has

    out, probs = kernels.attention_forward(q, k, v, mask)       # see layers/attention.py
    dq, dk, dv = kernels.attention_backward(dout, q, k, v, probs)
    …          (the rest: see kernels.py)
    name       = "numpy" | "cython" | "cupy"
    xp         = the array module its tensors live in (numpy or cupy)

Each backend is a module (numpy_backend, cython_backend, cupy_backend) with its functions
and its ``kernels`` object; the model is handed the object once, when it is built.

Names:
    numpy   the readable reference (minitransformer/layers/attention.py)
    cython  compiled kernels from csrc/*.pyx, on the CPU
    cupy    cuBLAS and the CUDA kernels in csrc/*.cu, on an NVIDIA GPU
    auto    cupy when a GPU is usable, else cython when built, else numpy (with one warning)

``get()`` with no name reads the environment variable MINITRANSFORMER_BACKEND, then
falls back to ``auto``. A backend that cannot run raises BackendUnavailable saying why.
"""

import importlib
import os
import warnings

NAMES = ("numpy", "cython", "cupy", "auto")
ENV_VAR = "MINITRANSFORMER_BACKEND"

_MODULES = {
    "numpy": "minitransformer.backends.numpy_backend",
    "cython": "minitransformer.backends.cython_backend",
    "cupy": "minitransformer.backends.cupy_backend",
}
_warned_fallback = False


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says why and what to do."""


def _load(name):
    try:
        module = importlib.import_module(_MODULES[name])
    except ImportError as error:
        raise BackendUnavailable(f"the {name!r} backend cannot run: {error}") from error
    reason = module.unavailable_reason()
    if reason:
        raise BackendUnavailable(f"the {name!r} backend cannot run: {reason}")
    return module.kernels


def get(name=None):
    """Return the kernels object of the backend called ``name`` (see the module docstring)."""
    global _warned_fallback
    if name is None:
        name = os.environ.get(ENV_VAR, "auto")
    name = name.strip().lower()
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")
    if name != "auto":
        return _load(name)
    for candidate in ("cupy", "cython"):
        try:
            return _load(candidate)
        except BackendUnavailable:
            continue
    if not _warned_fallback:
        warnings.warn(
            "minitransformer: no compiled backend is available, using the NumPy reference. "
            "Build the Cython kernels with `make setup` (or `pip install -e .`), "
            "which needs a C compiler.",
            RuntimeWarning,
            stacklevel=2,
        )
        _warned_fallback = True
    return _load("numpy")


def available():
    """Names of the backends that can run on this machine."""
    names = []
    for name in ("numpy", "cython", "cupy"):
        try:
            _load(name)
            names.append(name)
        except BackendUnavailable:
            pass
    return names
