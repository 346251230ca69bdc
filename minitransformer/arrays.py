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
