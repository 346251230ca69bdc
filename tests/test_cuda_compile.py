"""The CUDA kernels compile for every GPU the CuPy backend targets, checked without a GPU.

tests/test_cupy_backend.py runs the kernels of csrc/attention.cu, but only where a GPU is
visible, so on an ordinary machine a typo in the .cu file would pass `make test`. Here
NVRTC, NVIDIA's run-time compiler, compiles the file exactly as CuPy does on first use:

    source        csrc/attention.cu, as minitransformer/backends/cupy_backend.py reads it
    instantiated  masked_softmax_forward<float>, ...<double>, masked_softmax_backward<...>
                  (the backend's name expressions: a template body is only type-checked
                  once it is instantiated, so without them a type error would go unseen)
    options       CUPY_NVRTC_OPTIONS below, plus -arch=sm_XX for each XX in
                  cupy_backend.CUDA_ARCHITECTURES

NVRTC is a plain shared library that needs neither a GPU nor a CUDA driver. It comes from
the PyPI wheel nvidia-cuda-nvrtc-cu12 (in the `test` extra, so `make setup` installs it)
and is called through ctypes. Each compile must succeed with no warning, give PTX with an
`.entry` for every instantiated kernel, and a CUBIN (the machine code ptxas makes of that
PTX, so register and shared-memory limits are checked too). A failure names the
architecture and quotes NVRTC's log, which gives the file and line of each error.

Without NVRTC (no wheel for the platform, e.g. macOS) every test here skips, saying why.
"""

import ctypes
import ctypes.util
import glob
import importlib.metadata
import importlib.util
import os
import re
from functools import lru_cache
from pathlib import Path

import pytest

from minitransformer.backends import cupy_backend

# What CuPy 14's RawModule hands NVRTC besides the source and -arch=sm_XX
# (cupy/cuda/compiler.py and cupy/_core/raw.pyx): the C++17 default, flush-to-zero of
# float denormals, and functions device-side by default. CuPy 13 passes a subset of these.
CUPY_NVRTC_OPTIONS = ("-std=c++17", "-ftz=true", "--device-as-default-execution-space")

# NVRTC 12.9 warns that sm_70 and sm_72 are deprecated (CUDA 13 drops them). That note is
# about the toolkit, not about our kernels, so it alone is tolerated in the log.
DEPRECATED_ARCHITECTURE_NOTE = re.compile(r"^nvrtc: warning: Architectures prior to .* are deprecated.*$", re.M)

NVRTC_WHEEL = "nvidia-cuda-nvrtc-cu12"
NVRTC_SUCCESS = 0


class KernelCompileError(Exception):
    """NVRTC rejected the source; the message names the architecture and quotes the log."""


def nvrtc_library_candidates():
    """Paths where libnvrtc may lie: the PyPI wheel's folder first, then a CUDA toolkit."""
    candidates = []
    spec = importlib.util.find_spec("nvidia.cuda_nvrtc") if importlib.util.find_spec("nvidia") else None
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            # libnvrtc.so.12 on Linux; the wheel's Windows build keeps nvrtc64_*.dll in bin/
            candidates += sorted(glob.glob(os.path.join(folder, "lib", "libnvrtc.so*")))
            candidates += sorted(glob.glob(os.path.join(folder, "bin", "nvrtc64_*.dll")))
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(variable):
            candidates += sorted(glob.glob(os.path.join(os.environ[variable], "lib64", "libnvrtc.so*")))
    system = ctypes.util.find_library("nvrtc")
    if system:
        candidates.append(system)
    # the builtins library is loaded by libnvrtc itself, never directly
    return [path for path in candidates if "builtins" not in os.path.basename(path)]


@lru_cache(maxsize=None)
def load_nvrtc():
    """-> (the library through ctypes, its path, (major, minor)); raises OSError saying why not."""
    candidates = nvrtc_library_candidates()
    if not candidates:
        raise OSError(f"no libnvrtc found (pip install {NVRTC_WHEEL}, which `make setup` does on Linux and Windows)")
    errors = []
    for path in candidates:
        try:
            library = ctypes.CDLL(path)
        except OSError as error:
            errors.append(f"{path}: {error}")
            continue
        library.nvrtcGetErrorString.restype = ctypes.c_char_p
        major, minor = ctypes.c_int(), ctypes.c_int()
        if library.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) != NVRTC_SUCCESS:
            errors.append(f"{path}: nvrtcVersion failed")
            continue
        return library, path, (major.value, minor.value)
    raise OSError("libnvrtc could not be loaded: " + "; ".join(errors))


def nvrtc_or_skip():
    try:
        return load_nvrtc()
    except OSError as error:
        pytest.skip(f"NVRTC is not available, so the CUDA kernels are not compile-checked: {error}")


def supported_architectures(library):
    """The sm_XX numbers (as strings) this NVRTC can compile for."""
    count = ctypes.c_int()
    library.nvrtcGetNumSupportedArchs(ctypes.byref(count))
    architectures = (ctypes.c_int * count.value)()
    library.nvrtcGetSupportedArchs(architectures)
    return {str(arch) for arch in architectures}


def read_buffer(library, program, size_function, get_function):
    """One of NVRTC's outputs (log, PTX, CUBIN) as bytes: ask its size, then fill a buffer."""
    size = ctypes.c_size_t()
    check(library, getattr(library, size_function)(program, ctypes.byref(size)), size_function)
    buffer = ctypes.create_string_buffer(size.value)
    check(library, getattr(library, get_function)(program, buffer), get_function)
    return buffer.raw[: size.value]


def check(library, result, call):
    if result != NVRTC_SUCCESS:
        raise RuntimeError(f"{call} failed: {library.nvrtcGetErrorString(result).decode()}")


def compile_kernels(source, arch, name_expressions, filename="attention.cu"):
    """Compile ``source`` for sm_``arch`` -> (log, PTX, CUBIN, {name expression: lowered name}).

    Raises KernelCompileError, naming the architecture and quoting NVRTC's log, when the
    source does not compile."""
    library, _, version = load_nvrtc()
    program = ctypes.c_void_p()
    check(library, library.nvrtcCreateProgram(ctypes.byref(program), source.encode(), filename.encode(),
                                              0, None, None), "nvrtcCreateProgram")  # fmt: skip
    try:
        for expression in name_expressions:  # ask NVRTC to instantiate each template
            check(library, library.nvrtcAddNameExpression(program, expression.encode()), "nvrtcAddNameExpression")
        options = [f"-arch=sm_{arch}", *CUPY_NVRTC_OPTIONS]
        result = library.nvrtcCompileProgram(
            program, len(options), (ctypes.c_char_p * len(options))(*(option.encode() for option in options))
        )
        log = read_buffer(library, program, "nvrtcGetProgramLogSize", "nvrtcGetProgramLog")
        log = log.rstrip(b"\0").decode(errors="replace")
        if result != NVRTC_SUCCESS:
            raise KernelCompileError(
                f"csrc/{filename} does not compile for sm_{arch} (NVRTC {version[0]}.{version[1]}, "
                f"{library.nvrtcGetErrorString(result).decode()}, options {' '.join(options)}):\n{log}"
            )
        ptx = read_buffer(library, program, "nvrtcGetPTXSize", "nvrtcGetPTX").rstrip(b"\0").decode()
        cubin = read_buffer(library, program, "nvrtcGetCUBINSize", "nvrtcGetCUBIN")
        lowered = {}
        for expression in name_expressions:
            name = ctypes.c_char_p()
            check(library, library.nvrtcGetLoweredName(program, expression.encode(), ctypes.byref(name)),
                  "nvrtcGetLoweredName")  # fmt: skip
            lowered[expression] = name.value.decode()
        return log, ptx, cubin, lowered
    finally:
        library.nvrtcDestroyProgram(ctypes.byref(program))


def backend_name_expressions():
    """The template instances the backend asks for: what cupy_backend._kernels compiles."""
    return [f"{kernel}<{c_type}>" for kernel in cupy_backend._KERNEL_NAMES for c_type in cupy_backend._C_TYPE.values()]


def test_the_test_extra_brings_nvrtc():
    """Where `make setup` installed the NVRTC wheel, NVRTC must load: the compile checks
    below may skip only where the wheel does not exist, never because loading broke."""
    try:
        importlib.metadata.version(NVRTC_WHEEL)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{NVRTC_WHEEL} is not installed (it has no wheel for this platform)")
    _, path, version = load_nvrtc()  # raises, failing the test, if it does not load
    assert version >= (12, 8), f"{path} is NVRTC {version}; the test extra asks for 12.8 or later (Blackwell)"


@pytest.mark.parametrize("arch", cupy_backend.CUDA_ARCHITECTURES)
def test_the_kernels_compile_for_every_target_architecture(arch):
    library, _, version = nvrtc_or_skip()
    if arch not in supported_architectures(library):
        pytest.skip(f"NVRTC {version[0]}.{version[1]} cannot compile for sm_{arch}; {NVRTC_WHEEL}>=12.8 can")
    assert cupy_backend.KERNEL_SOURCE is not None, f"{cupy_backend.KERNEL_SOURCE_PATH} is missing"
    expressions = backend_name_expressions()
    log, ptx, cubin, lowered = compile_kernels(cupy_backend.KERNEL_SOURCE, arch, expressions)

    remaining = DEPRECATED_ARCHITECTURE_NOTE.sub("", log).strip()
    assert not remaining, f"csrc/attention.cu compiles for sm_{arch} with warnings:\n{log}"
    assert re.search(rf"^\.target sm_{arch}\b", ptx, re.M), f"the PTX for sm_{arch} names another target"
    for expression, name in lowered.items():
        assert re.search(rf"\.entry {re.escape(name)}\(", ptx), f"no kernel {expression} ({name}) in the sm_{arch} PTX"
    assert cubin[:4] == b"\x7fELF", f"NVRTC gave no CUBIN for sm_{arch} (ptxas did not run)"


# Two ways to break the source, each on one line of a kernel that every instance uses:
#   syntax  a statement loses its semicolon
#   type    a device function returns a pointer where it promises a Real, an error that
#           exists only once the template is instantiated as float or double
BROKEN = {
    "syntax": ("const Real result = partial[0];", "const Real result = partial[0]"),
    "type": ("return a > b ? a : b;", "return a > b ? &a : &b;"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_kernel_fails_and_the_log_says_where(kind):
    """The check is not vacuous: a deliberately broken copy of the source is rejected, and
    the error names the architecture and carries NVRTC's log pointing at the broken line."""
    nvrtc_or_skip()
    original, broken = BROKEN[kind]
    source = cupy_backend.KERNEL_SOURCE
    assert source is not None, f"{cupy_backend.KERNEL_SOURCE_PATH} is missing"
    assert source.count(original) == 1, f"the line to break is no longer in csrc/attention.cu: {original}"
    line = source[: source.index(original)].count("\n") + 1
    arch = cupy_backend.CUDA_ARCHITECTURES[-1]
    with pytest.raises(KernelCompileError) as failure:
        compile_kernels(source.replace(original, broken), arch, backend_name_expressions())
    message = str(failure.value)
    assert f"does not compile for sm_{arch}" in message, message
    # NVRTC reports a missing semicolon at the next token, which may sit a line or two below
    reported = [int(number) for number in re.findall(r"attention\.cu\((\d+)\): error", message)]
    assert any(line <= number <= line + 3 for number in reported), (
        f"NVRTC's log does not point at line {line} (the broken one):\n{message}"
    )


def test_a_template_type_error_needs_the_instances():
    """Why the name expressions matter: the broken template of BROKEN["type"] compiles
    when nothing instantiates it, and fails as soon as the backend's instances are asked for."""
    nvrtc_or_skip()
    original, broken = BROKEN["type"]
    source = cupy_backend.KERNEL_SOURCE.replace(original, broken)
    arch = cupy_backend.CUDA_ARCHITECTURES[-1]
    compile_kernels(source, arch, [])  # no instance: nothing to type-check
    with pytest.raises(KernelCompileError):
        compile_kernels(source, arch, backend_name_expressions())


def test_the_source_checked_is_the_one_the_backend_loads():
    assert Path(cupy_backend.KERNEL_SOURCE_PATH).name == "attention.cu"
    assert cupy_backend.KERNEL_SOURCE == Path(cupy_backend.KERNEL_SOURCE_PATH).read_text(encoding="utf-8")
