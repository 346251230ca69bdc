"""The CuPy backend: the attention core on an NVIDIA GPU, in cuBLAS and two CUDA kernels.

    Attention(Q, K, V) = softmax(Q·Kᵀ / √Dh + M) · V          (as in layers/attention.py)

Forward, the same four passes as the NumPy reference:
    1.    scores = Q·Kᵀ                                cuBLAS, batched over (B, H)
    2, 3. P = masked_softmax(scores · (1/√Dh), mask)   one fused kernel, in place
    4.    O = P·V                                      cuBLAS

Backward, in reverse:
    4.    dV = Pᵀ·dO,   dP = dO·Vᵀ                     cuBLAS
    3.    dS' = (1/√Dh) · P ⊙ (dP − rowsum(dP ⊙ P))     one fused kernel, in place
    1.    dQ = dS'·K,   dK = dS'ᵀ·Q                     cuBLAS

The kernels are in csrc/attention.cu (read when this module is imported, compiled by NVRTC
through cupy.RawModule on first use; CuPy keeps the binary in its on-disk cache). Each
handles one row of S scores per thread block, so the (B, H, T, S) array crosses memory
once per kernel instead of once per elementwise step. The semantics are the reference's:
masked keys and fully masked rows get weight 0, outputs have the input dtype (float32 or
float64), and nothing here waits for the GPU, so a layer never stalls the host.

Shapes: q (B, H, T, Dh), k and v (B, H, S, Dh), mask None or bool broadcastable to
(B, H, T, S), True = may attend. Every array must already be a CuPy array on the device.

float32 products use full float32 in cuBLAS unless CUPY_TF32=1 is set, which trades ten
bits of mantissa for speed and breaks parity with the reference beyond about 1e-3.

Importing this module never fails: without CuPy, or without a visible GPU,
``unavailable_reason()`` says why and minitransformer.backends.get falls back.
"""

import functools
import math
from pathlib import Path

import numpy as np

from ..layers.attention import check_attention_inputs
from .kernels import Kernels

try:
    import cupy
except Exception as error:  # ImportError when not installed; other errors from a broken CUDA setup
    cupy = None
    _import_error = error
else:
    _import_error = None

name = "cupy"
xp = cupy  # the array module this backend's tensors live in

# csrc/ sits beside the package in the source tree (an editable install reads it there);
# a regular install carries a copy in minitransformer/_ext/ (setup.py's build_py puts it there)
_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "csrc" / "attention.cu",
    Path(__file__).resolve().parents[1] / "_ext" / "attention.cu",
)
KERNEL_SOURCE_PATH = next((path for path in _CANDIDATES if path.is_file()), _CANDIDATES[0])
KERNEL_SOURCE = KERNEL_SOURCE_PATH.read_text(encoding="utf-8") if KERNEL_SOURCE_PATH.is_file() else None

# the C type that instantiates the kernel templates for each supported dtype
_C_TYPE = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_KERNEL_NAMES = ("masked_softmax_forward", "masked_softmax_backward")

# The GPU generations the kernels are meant to compile for, as compute capabilities (sm_XX):
# Volta V100, Turing, Ampere A100 and RTX 30, Ada, Hopper H100/H200, Blackwell B200 and
# RTX 50. CuPy itself compiles for the GPU it finds (RawModule picks -arch=sm_XX from the
# device); tests/test_cuda_compile.py compiles csrc/attention.cu with NVRTC for each of
# these, so a kernel that breaks on any of them fails `make test` on a machine with no GPU.
CUDA_ARCHITECTURES = ("70", "75", "80", "86", "89", "90", "100", "120")

# One block per row; the threads of a block share the row's keys. A warp (32 threads) is the
# smallest sensible block; past 256 threads a long row just gives each thread more keys.
WARP_SIZE = 32
MAX_THREADS_PER_ROW = 256
MAX_BLOCKS = 2**31 - 1  # the CUDA limit on gridDim.x


def unavailable_reason():
    """None when the backend can run here, else one sentence saying why not. Never raises."""
    if cupy is None:
        if isinstance(_import_error, ModuleNotFoundError) and _import_error.name == "cupy":
            return "CuPy is not installed (pip install '.[gpu]')"
        return f"CuPy is installed but could not be imported: {_import_error}"
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # e.g. cudaErrorNoDevice, cudaErrorInsufficientDriver
        return f"CUDA could not be initialized: {error}"
    if n_devices == 0:
        return "no NVIDIA GPU is visible (cupy.cuda.runtime.getDeviceCount() == 0)"
    if KERNEL_SOURCE is None:
        return f"the CUDA kernel source {KERNEL_SOURCE_PATH} is missing (install from a source checkout)"
    try:
        _kernels()
    except Exception as error:
        return f"the CUDA kernels of {KERNEL_SOURCE_PATH.name} could not be compiled: {error}"
    return None


@functools.lru_cache(maxsize=None)
def _kernels():
    """Compile csrc/attention.cu once per process -> {(kernel name, dtype): RawKernel}."""
    name_expressions = {
        (kernel, dtype): f"{kernel}<{c_type}>" for kernel in _KERNEL_NAMES for dtype, c_type in _C_TYPE.items()
    }
    module = cupy.RawModule(code=KERNEL_SOURCE, name_expressions=list(name_expressions.values()))
    return {key: module.get_function(expression) for key, expression in name_expressions.items()}


def _check_device_arrays(dtype, **arrays):
    """Raise a TypeError naming the array that is not a CuPy array of the kernels' dtype."""
    if dtype not in _C_TYPE:
        raise TypeError(f"the cupy backend supports float32 and float64, got {dtype}")
    for array_name, array in arrays.items():
        if not isinstance(array, cupy.ndarray):
            raise TypeError(
                f"the cupy backend needs CuPy arrays, but {array_name} is a {type(array).__module__}."
                f"{type(array).__name__} (move it with cupy.asarray)"
            )
        if array.dtype != dtype:
            raise TypeError(f"{array_name} has dtype {array.dtype}, but q has {dtype}")


def _launch_shape(n_rows, n_keys, itemsize):
    """Grid, block and shared-memory bytes for one block per row of ``n_keys`` entries."""
    if n_rows > MAX_BLOCKS:
        raise ValueError(f"B·H·T = {n_rows} rows exceed the {MAX_BLOCKS} blocks a grid can hold")
    threads_per_block = WARP_SIZE
    while threads_per_block < n_keys and threads_per_block < MAX_THREADS_PER_ROW:
        threads_per_block *= 2  # a power of two, which the tree reduction needs
    blocks_per_grid = n_rows
    shared_mem_bytes = threads_per_block * itemsize  # one partial max or sum per thread
    return (blocks_per_grid,), (threads_per_block,), shared_mem_bytes


def _row_launch(rows):
    """rows (B, H, T, S) -> _launch_shape's (grid, block, shared-memory bytes) for one block
    per row of S entries, or None when there is no row or no entry to compute."""
    batch, n_heads, n_queries, n_keys = rows.shape
    n_rows = batch * n_heads * n_queries
    if n_rows == 0 or n_keys == 0:
        return None
    return _launch_shape(n_rows, n_keys, rows.itemsize)


def _broadcast_mask(mask):
    """The mask as a device bool array and its four element strides over (B, H, T, S),
    0 along every broadcast axis. No mask is a single True seen everywhere."""
    if mask is None:
        return cupy.ones((1, 1, 1, 1), dtype=np.bool_), (0, 0, 0, 0)
    mask = cupy.asarray(mask)
    strides = tuple(
        0 if size == 1 else stride // mask.itemsize for size, stride in zip(mask.shape, mask.strides)
    )
    return mask, strides


def _masked_softmax_forward(scores, mask, scale):
    """scores (B, H, T, S) C-contiguous, overwritten with the attention weights."""
    launch = _row_launch(scores)
    if launch is None:
        return
    grid, block, shared_mem_bytes = launch
    _, n_heads, n_queries, n_keys = scores.shape
    mask, (stride_b, stride_h, stride_t, stride_s) = _broadcast_mask(mask)
    real = scores.dtype.type  # the kernel's Real: the scale travels in the rows' precision
    kernel = _kernels()["masked_softmax_forward", scores.dtype]
    kernel(
        grid,
        block,
        (
            scores,
            mask,
            np.int64(stride_b),
            np.int64(stride_h),
            np.int64(stride_t),
            np.int64(stride_s),
            np.int32(n_heads),
            np.int32(n_queries),
            np.int32(n_keys),
            real(scale),
        ),
        shared_mem=shared_mem_bytes,
    )


def _masked_softmax_backward(dprobs, probs, scale):
    """dprobs (B, H, T, S) C-contiguous, overwritten with scale · dS; probs the same shape."""
    launch = _row_launch(dprobs)
    if launch is None:
        return
    grid, block, shared_mem_bytes = launch
    n_keys = dprobs.shape[3]
    real = dprobs.dtype.type
    kernel = _kernels()["masked_softmax_backward", dprobs.dtype]
    kernel(grid, block, (dprobs, probs, np.int32(n_keys), real(scale)), shared_mem=shared_mem_bytes)


def attention_forward(q, k, v, mask=None):
    """q (B, H, T, Dh), k (B, H, S, Dh), v (B, H, S, Dh), mask ~(B, H, T, S) bool
    -> out (B, H, T, Dh), probs (B, H, T, S)."""
    check_attention_inputs(q, k, v, mask)
    _check_device_arrays(q.dtype, q=q, k=k, v=v)
    scale = 1.0 / math.sqrt(q.shape[-1])
    # pass 1: raw scores; the kernel applies the scale as it reads them
    scores = cupy.ascontiguousarray(cupy.matmul(q, k.swapaxes(-1, -2)))  # (B, H, T, S)
    # passes 2 and 3: mask and softmax, each row by one block, written over the scores
    _masked_softmax_forward(scores, mask, scale)
    probs = scores  # (B, H, T, S)
    # pass 4: the weighted average of the values
    out = cupy.matmul(probs, v)  # (B, H, T, Dh)
    return out, probs


def attention_backward(dout, q, k, v, probs):
    """dout (B, H, T, Dh) -> dq (B, H, T, Dh), dk (B, H, S, Dh), dv (B, H, S, Dh)."""
    _check_device_arrays(q.dtype, dout=dout, q=q, k=k, v=v, probs=probs)
    scale = 1.0 / math.sqrt(q.shape[-1])
    probs = cupy.ascontiguousarray(probs)  # (B, H, T, S), as the forward returned it
    # in the forward pass this was: out = probs @ v
    dv = cupy.matmul(probs.swapaxes(-1, -2), dout)  # (B, H, S, Dh)
    dprobs = cupy.ascontiguousarray(cupy.matmul(dout, v.swapaxes(-1, -2)))  # (B, H, T, S)
    # in the forward pass this was: probs = softmax(scores · scale); the kernel returns
    # scale · dscores, so the two products below need no extra pass for the scale
    _masked_softmax_backward(dprobs, probs, scale)
    dscores_scaled = dprobs  # (B, H, T, S)
    # in the forward pass this was: scores = q @ kᵀ
    dq = cupy.matmul(dscores_scaled, k)  # (B, H, T, Dh)
    dk = cupy.matmul(dscores_scaled.swapaxes(-1, -2), q)  # (B, H, S, Dh)
    return dq, dk, dv


class CupyKernels(Kernels):
    """The kernels object of this backend: the attention core on the GPU; the other
    operations are the references, which run on CuPy arrays as they are (arrays.py)."""

    name = "cupy"
    unavailable_reason = staticmethod(unavailable_reason)
    xp = cupy
    attention_forward = staticmethod(attention_forward)
    attention_backward = staticmethod(attention_backward)


kernels = CupyKernels()
