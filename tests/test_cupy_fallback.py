"""Where the cupy backend cannot run, it says why, and the dispatch falls back. Runs anywhere.

tests/test_cupy_backend.py checks the backend itself and is skipped without a GPU; this file
checks the other side: importing the backend never fails, ``unavailable_reason()`` names each
cause in one sentence (never raising), ``backends.get("cupy")`` raises BackendUnavailable with
that sentence, and ``backends.get("auto")`` picks a backend that runs. The causes a machine
does not have (CuPy missing on a GPU machine, a GPU on this one) are staged with a stand-in
for the ``cupy`` module.

    .venv/bin/python -m pytest -q tests/test_cupy_fallback.py
"""

import importlib.util
import sys
import types
import warnings

import numpy as np
import pytest

from minitransformer import backends
from minitransformer.backends import cupy_backend

NOT_INSTALLED = "CuPy is not installed (pip install '.[gpu]')"
NO_GPU = "no NVIDIA GPU is visible (cupy.cuda.runtime.getDeviceCount() == 0)"


def stand_in_cupy(device_count=1, device_error=None, compile_error=None):
    """Just enough of the ``cupy`` module for unavailable_reason(): a device count (or the
    CUDA error asking for it raises) and a RawModule whose compilation fails, if asked to."""

    def get_device_count():
        if device_error is not None:
            raise device_error
        return device_count

    class RawModule:
        def __init__(self, code=None, name_expressions=()):
            self.name_expressions = list(name_expressions)

        def get_function(self, name_expression):
            if compile_error is not None:
                raise compile_error
            return name_expression

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime), RawModule=RawModule)


@pytest.fixture
def staged(monkeypatch):
    """Replace what the backend found at import; the compiled-kernel cache starts and ends empty."""
    cupy_backend._kernels.cache_clear()

    def stage(cupy=None, import_error=None, kernel_source=cupy_backend.KERNEL_SOURCE):
        monkeypatch.setattr(cupy_backend, "cupy", cupy)
        monkeypatch.setattr(cupy_backend, "_import_error", import_error)
        monkeypatch.setattr(cupy_backend, "KERNEL_SOURCE", kernel_source)

    yield stage
    cupy_backend._kernels.cache_clear()


def check_reported(reason, *fragments):
    """The reason contains every fragment, and get("cupy") raises with that same reason."""
    assert isinstance(reason, str) and reason, f"expected a reason, got {reason!r}"
    for fragment in fragments:
        assert fragment in reason, f"{fragment!r} missing from the reason {reason!r}"
    with pytest.raises(backends.BackendUnavailable) as raised:
        backends.get("cupy")
    assert reason in str(raised.value)


def test_not_installed(staged):
    staged(cupy=None, import_error=ModuleNotFoundError("No module named 'cupy'", name="cupy"))
    reason = cupy_backend.unavailable_reason()
    assert reason == NOT_INSTALLED
    check_reported(reason)


def test_installed_but_broken(staged):
    error = ImportError("libnvrtc.so.12: cannot open shared object file: No such file or directory")
    staged(cupy=None, import_error=error)
    check_reported(cupy_backend.unavailable_reason(), "could not be imported", str(error))


def test_no_gpu_visible(staged):
    staged(cupy=stand_in_cupy(device_count=0))
    reason = cupy_backend.unavailable_reason()
    assert reason == NO_GPU
    check_reported(reason)


def test_cuda_error_is_reported_in_its_own_words(staged):
    error = RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version")
    staged(cupy=stand_in_cupy(device_error=error))
    check_reported(cupy_backend.unavailable_reason(), "CUDA could not be initialized", str(error))


def test_kernel_compilation_failure(staged):
    error = RuntimeError("nvrtc: error: failed to load builtins for compute_90")
    staged(cupy=stand_in_cupy(compile_error=error))
    check_reported(cupy_backend.unavailable_reason(), "attention.cu", "could not be compiled", str(error))


def test_missing_kernel_source(staged):
    staged(cupy=stand_in_cupy(), kernel_source=None)
    check_reported(cupy_backend.unavailable_reason(), "attention.cu", "missing")


def test_a_usable_gpu_compiles_every_kernel(staged):
    staged(cupy=stand_in_cupy())
    assert cupy_backend.unavailable_reason() is None
    kernels = cupy_backend._kernels()
    assert set(kernels) == {
        (kernel, np.dtype(dtype))
        for kernel in ("masked_softmax_forward", "masked_softmax_backward")
        for dtype in (np.float32, np.float64)
    }
    assert kernels["masked_softmax_forward", np.dtype(np.float32)] == "masked_softmax_forward<float>"
    assert kernels["masked_softmax_backward", np.dtype(np.float64)] == "masked_softmax_backward<double>"


def test_kernel_source_is_found_beside_the_package():
    assert cupy_backend.KERNEL_SOURCE_PATH.is_file(), cupy_backend.KERNEL_SOURCE_PATH
    for kernel in ("masked_softmax_forward", "masked_softmax_backward"):
        assert f"__global__ void {kernel}(" in cupy_backend.KERNEL_SOURCE


def test_importing_the_backend_never_needs_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now fails as if not installed
    spec = importlib.util.spec_from_file_location(
        "minitransformer.backends._cupy_backend_without_cupy", cupy_backend.__file__
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.name == "cupy" and module.xp is None
    assert module.unavailable_reason() == NOT_INSTALLED


def test_this_machine_gets_an_explanation_or_the_backend():
    reason = cupy_backend.unavailable_reason()
    if reason is None:
        assert backends.get("cupy").name == "cupy"
    else:
        causes = ("CuPy is", "CUDA could not", "no NVIDIA GPU", "the CUDA kernel")
        assert reason.startswith(causes), f"unexpected reason {reason!r}"
        check_reported(reason)


def test_auto_falls_back_to_a_backend_that_runs(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    with warnings.catch_warnings():
        # the notice that no compiled backend is built, which is expected on a bare machine
        warnings.simplefilter("ignore", RuntimeWarning)
        backend = backends.get("auto")
        assert backends.get().name == backend.name  # no name and no variable means auto
    if cupy_backend.unavailable_reason() is not None:
        assert backend.name != "cupy"
    rng = np.random.default_rng(0)
    q = backend.xp.asarray(rng.standard_normal((2, 2, 3, 4)))  # (B, H, T, Dh)
    out, probs = backend.attention_forward(q, q, q, None)
    assert out.shape == (2, 2, 3, 4) and probs.shape == (2, 2, 3, 3)
