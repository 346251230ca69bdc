"""Which array library holds a tensor: NumPy on the CPU, CuPy on an NVIDIA GPU.

Every layer is written once. It asks ``xp = array_module(x)`` and then calls ``xp.exp``,
``xp.matmul`` and so on, so the same lines run on NumPy arrays and on CuPy arrays. A
reader can read ``xp`` as ``np``.
"""

import numpy as np


def array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    for array in arrays:
        if type(array).__module__.startswith("cupy"):
            import cupy

            return cupy
    return np


def to_numpy(array):
    """A NumPy copy of a NumPy or CuPy array (used for logging, checkpoints and plots)."""
    if type(array).__module__.startswith("cupy"):
        return array.get()
    return np.asarray(array)


def float_dtype(*arrays, kernel):
    """The dtype the arrays meet in (np.result_type); a clear ValueError unless it is float32
    or float64, the two types the compiled kernels (csrc/) are built for."""
    dtype = np.result_type(*arrays)
    if dtype != np.float32 and dtype != np.float64:
        raise ValueError(f"{kernel}: float32 or float64 arrays only, got {dtype}")
    return dtype


def check_id_matrix(ids, name):
    """Raise a clear ValueError unless ``ids`` is a 2-D array (B, length): a batch of sentences."""
    if not hasattr(ids, "ndim") or ids.ndim != 2:
        raise ValueError(f"{name} must be a 2-D integer array (B, length), got {getattr(ids, 'shape', ids)!r}")


def check_token_ids(ids, vocab_size, name="token ids"):
    """Raise a clear ValueError when an id lies outside [0, vocab_size)."""
    xp = array_module(ids)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got dtype {ids.dtype}")
    outside = (ids < 0) | (ids >= vocab_size)
    if ids.size and bool(outside.any()):  # one device-to-host sync on a GPU
        bad = ids[outside]
        raise ValueError(
            f"{name} outside the vocabulary [0, {vocab_size}): found {int(xp.asarray(bad).ravel()[0])}"
        )
